/* daxfs direct-mapping test: the fsdax scenario of ndctl's test/dax-poison.c, written again for
 * daxfs (`daxfs poison inject` instead of MADV_HWPOISON, which this kernel lacks).
 * Usage: dax_poison FILE DAXFS_BIN. FILE holds 4 MiB of data (two 2 MiB entries).
 * A MAP_SHARED_VALIDATE|MAP_POPULATE|MAP_SYNC mapping of 2 x 2 MiB; MADV_SOFT_OFFLINE fails;
 * then for three poisoned pages (in the first PMD entry, in the same range again once it is
 * split into PTE entries, in the second PMD entry) an access raises SIGBUS BUS_MCEERR_AR with
 * si_addr = the faulting address and si_addr_lsb 21, 12, 21; a child without a handler dies of
 * SIGBUS; recovery by punch hole + pwrite + fsync faults the page in cleanly.
 * Exit 0 when all holds; else a message on stderr and the failed step's number. */
#include <fcntl.h>
#include <linux/mman.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define ALIGN (2UL << 20)

static sigjmp_buf sj_env;
static volatile int sig_code, sig_lsb, sig_count;
static void *volatile sig_addr;

static void sigbus_hdl(int sig, siginfo_t *si, void *ptr)
{
	(void)sig;
	(void)ptr;
	sig_code = si->si_code;
	sig_addr = si->si_addr;
	sig_lsb = si->si_addr_lsb;
	sig_count++;
	siglongjmp(sj_env, 1);
}

static const char *file, *daxfs;

static int poison(unsigned long off)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "%s poison inject %s --offset %lu", daxfs, file, off);
	return system(cmd);
}

/* Loads at p; returns 1 when SIGBUS was raised (sig_* hold its siginfo). */
__attribute__((noinline)) static int load(volatile unsigned char *p, unsigned char *v)
{
	sig_count = 0;
	if (sigsetjmp(sj_env, 1))
		return 1;
	*v = *p;
	return 0;
}

static int expect_mce(unsigned char *addr, unsigned long off, int lsb, int step)
{
	unsigned char v;
	if (poison(off)) {
		fprintf(stderr, "step %d: daxfs poison inject failed\n", step);
		return step;
	}
	unsigned char *at = addr + off + 100;
	if (!load(at, &v)) {
		fprintf(stderr, "step %d: no SIGBUS on the poisoned page\n", step);
		return step;
	}
	fprintf(stderr, "step %d: SIGBUS code %d addr %p (access %p) lsb %d\n", step, sig_code,
		sig_addr, (void *)at, sig_lsb);
	if (sig_code != BUS_MCEERR_AR || sig_addr != (void *)at || sig_lsb != lsb) {
		fprintf(stderr, "step %d: want BUS_MCEERR_AR (%d), addr %p, lsb %d\n", step,
			BUS_MCEERR_AR, (void *)at, lsb);
		return step;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char buf[4096], v;
	struct sigaction act;
	int rc;

	if (argc != 3)
		return 2;
	file = argv[1];
	daxfs = argv[2];
	int fd = open(file, O_RDWR);
	if (fd < 0)
		return 2;
	memset(buf, 0x5a, sizeof(buf));
	memset(&act, 0, sizeof(act));
	act.sa_sigaction = sigbus_hdl;
	act.sa_flags = SA_SIGINFO;
	if (sigaction(SIGBUS, &act, 0))
		return 2;
	/* dirty the block to bypass the zero page, as ndctl does */
	if (pwrite(fd, buf, 4096, ALIGN / 2) != 4096 || fsync(fd))
		return 2;
	unsigned char *addr = mmap(NULL, 2 * ALIGN, PROT_READ | PROT_WRITE,
				   MAP_SHARED_VALIDATE | MAP_POPULATE | MAP_SYNC, fd, 0);
	if (addr == MAP_FAILED) {
		perror("mmap MAP_SHARED_VALIDATE|MAP_POPULATE|MAP_SYNC");
		return 3;
	}
	if (madvise(addr + ALIGN / 2, 4096, MADV_SOFT_OFFLINE) == 0) {
		fprintf(stderr, "soft offline should always fail for dax\n");
		return 4;
	}
	/* A PMD entry (the whole first 2 MiB), then the same range split into PTE entries by the
	 * first poison, then the second PMD entry. */
	if ((rc = expect_mce(addr, ALIGN / 2, 21, 5)))
		return rc;
	if ((rc = expect_mce(addr, ALIGN / 2 + 8192, 12, 6)))
		return rc;
	if ((rc = expect_mce(addr, ALIGN + 3 * 4096, 21, 7)))
		return rc;
	/* The same page again: still the hardware's signal. */
	if (!load(addr + ALIGN / 2, &v) || sig_code != BUS_MCEERR_AR || sig_lsb != 21) {
		fprintf(stderr, "step 8: a second access: code %d lsb %d\n", sig_code, sig_lsb);
		return 8;
	}
	/* Without a handler the process dies of SIGBUS. */
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		v = *(volatile unsigned char *)(addr + ALIGN / 2 + 8192);
		_exit(0);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st) || WTERMSIG(st) != SIGBUS) {
		fprintf(stderr, "step 9: the child without a handler did not die of SIGBUS\n");
		return 9;
	}
	/* Clear the error: punch hole + pwrite + fsync, then the page faults in cleanly. */
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, ALIGN / 2, 4096) ||
	    pwrite(fd, buf, 4096, ALIGN / 2) != 4096 || fsync(fd)) {
		perror("step 10: punch + pwrite + fsync");
		return 10;
	}
	if (load(addr + ALIGN / 2, &v) || v != 0x5a) {
		fprintf(stderr, "step 11: the recovered page: signal %d, value %#x\n", sig_count, v);
		return 11;
	}
	/* A store through the mapping reaches the file. */
	addr[ALIGN / 2 + 1] = 0xa5;
	if (pread(fd, &v, 1, ALIGN / 2 + 1) != 1 || v != 0xa5) {
		fprintf(stderr, "step 12: store not seen by pread\n");
		return 12;
	}
	munmap(addr, 2 * ALIGN);
	printf("dax-poison: ok\n");
	return 0;
}
