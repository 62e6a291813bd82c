//! Property test: random sequences of mixed-order operations on the radix-tree `Index` agree with
//! the `BTreeMap` model (`ModelIndex`), operation by operation, and the full contents agree after
//! each step.

use daxfs::index::{Index, Mark, ModelIndex, MAX_ORDER, MAX_VALUE};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Store(u64, u8, u64),
    Update(u64, u64),
    Erase(u64),
    /// Split the entry covering the index into order `entry.order - delta`.
    Split(u64, u8),
    Load(u64),
    FindConflict(u64, u8),
    SetMark(u64, bool),
    ClearMark(u64, bool),
    GetMark(u64, bool),
    FindMarked(u64, bool),
    Range(u64, u64),
}

fn index() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..4096,
        2 => 0u64..1 << 20,
        2 => (0u64..16384).prop_map(|d| (1u64 << 63) - 8192 + d),
        1 => (0u64..4096).prop_map(|d| u64::MAX - d),
        1 => any::<u64>(),
    ]
}

fn order() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(0u8),
        3 => 1u8..=8,
        3 => Just(9u8),
        1 => 10u8..=MAX_ORDER,
        1 => Just(MAX_ORDER),
        1 => Just(MAX_ORDER + 1),
    ]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..1000,
        1 => Just(MAX_VALUE),
        1 => MAX_VALUE..=u64::MAX,
    ]
}

fn mark(b: bool) -> Mark {
    if b {
        Mark::Dirty
    } else {
        Mark::Towrite
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (index(), order(), value()).prop_map(|(i, o, v)| Op::Store(i, o, v)),
        2 => (index(), value()).prop_map(|(i, v)| Op::Update(i, v)),
        3 => index().prop_map(Op::Erase),
        2 => (index(), 1u8..=9).prop_map(|(i, d)| Op::Split(i, d)),
        3 => index().prop_map(Op::Load),
        3 => (index(), order()).prop_map(|(i, o)| Op::FindConflict(i, o.min(MAX_ORDER))),
        2 => (index(), any::<bool>()).prop_map(|(i, m)| Op::SetMark(i, m)),
        1 => (index(), any::<bool>()).prop_map(|(i, m)| Op::ClearMark(i, m)),
        1 => (index(), any::<bool>()).prop_map(|(i, m)| Op::GetMark(i, m)),
        2 => (index(), any::<bool>()).prop_map(|(i, m)| Op::FindMarked(i, m)),
        2 => (index(), index()).prop_map(|(a, b)| Op::Range(a, b)),
    ]
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let real = Index::new();
    let model = ModelIndex::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Store(i, o, v) => {
                let a = real.lock().store(i, o, v);
                let b = model.lock().store(i, o, v);
                prop_assert_eq!(a, b, "step {} {:?}", step, op);
            }
            Op::Update(i, v) => {
                prop_assert_eq!(
                    real.lock().update(i, v),
                    model.lock().update(i, v),
                    "{:?}",
                    op
                )
            }
            Op::Erase(i) => {
                prop_assert_eq!(real.lock().erase(i), model.lock().erase(i), "{:?}", op)
            }
            Op::Split(i, d) => {
                let new_order = model.load(i).map_or(d, |e| e.order.saturating_sub(d));
                let a = real.lock().split(i, new_order);
                let b = model.lock().split(i, new_order);
                prop_assert_eq!(a, b, "{:?}", op);
            }
            Op::Load(i) => {
                prop_assert_eq!(real.load(i), model.load(i), "{:?}", op);
                prop_assert_eq!(real.lock().load(i), model.load(i), "{:?}", op);
            }
            Op::FindConflict(i, o) => {
                prop_assert_eq!(
                    real.find_conflict(i, o),
                    model.find_conflict(i, o),
                    "{:?}",
                    op
                );
                prop_assert_eq!(real.lock().find_conflict(i, o), model.find_conflict(i, o));
            }
            Op::SetMark(i, m) => prop_assert_eq!(
                real.lock().set_mark(i, mark(m)),
                model.lock().set_mark(i, mark(m)),
                "{:?}",
                op
            ),
            Op::ClearMark(i, m) => prop_assert_eq!(
                real.lock().clear_mark(i, mark(m)),
                model.lock().clear_mark(i, mark(m)),
                "{:?}",
                op
            ),
            Op::GetMark(i, m) => {
                prop_assert_eq!(
                    real.get_mark(i, mark(m)),
                    model.get_mark(i, mark(m)),
                    "{:?}",
                    op
                )
            }
            Op::FindMarked(i, m) => prop_assert_eq!(
                real.find_marked(i, mark(m)),
                model.find_marked(i, mark(m)),
                "{:?}",
                op
            ),
            Op::Range(a, b) => prop_assert_eq!(real.range(a, b), model.range(a, b), "{:?}", op),
        }
        prop_assert_eq!(real.len(), model.len(), "len after step {} {:?}", step, op);
        prop_assert_eq!(
            real.range(0, u64::MAX),
            model.range(0, u64::MAX),
            "contents after {:?}",
            op
        );
        for m in [Mark::Dirty, Mark::Towrite] {
            prop_assert_eq!(
                real.find_marked(0, m),
                model.find_marked(0, m),
                "marks after {:?}",
                op
            );
        }
    }
    // Erasing everything frees every node.
    let mut all = model.range(0, u64::MAX);
    all.extend(model.load(u64::MAX));
    all.dedup();
    for e in all {
        prop_assert_eq!(real.lock().erase(e.index), Some(e));
    }
    prop_assert_eq!(real.len(), 0);
    prop_assert_eq!(real.node_count(), 0, "nodes left after erasing everything");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn index_agrees_with_model(ops in prop::collection::vec(op(), 1..80)) {
        run(&ops)?;
    }
}

/// Dense small-range operations, where entries of neighbouring orders collide most.
fn dense_op() -> impl Strategy<Value = Op> {
    let i = 0u64..2048;
    prop_oneof![
        6 => (i.clone(), 0u8..=12, 0u64..100).prop_map(|(i, o, v)| Op::Store(i, o, v)),
        3 => i.clone().prop_map(Op::Erase),
        2 => (i.clone(), 1u8..=9).prop_map(|(i, d)| Op::Split(i, d)),
        2 => (i.clone(), 0u8..=12).prop_map(|(i, o)| Op::FindConflict(i, o)),
        2 => (i.clone(), any::<bool>()).prop_map(|(i, m)| Op::SetMark(i, m)),
        1 => (i.clone(), any::<bool>()).prop_map(|(i, m)| Op::ClearMark(i, m)),
        2 => (i.clone(), any::<bool>()).prop_map(|(i, m)| Op::FindMarked(i, m)),
        1 => (i.clone(), i).prop_map(|(a, b)| Op::Range(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn index_agrees_with_model_dense(ops in prop::collection::vec(dense_op(), 1..120)) {
        run(&ops)?;
    }
}
