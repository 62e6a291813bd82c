/* daxfs direct-mapping test: layout revocation while a process and its forked child map the
 * range. Usage: revoke_fork FILE OTHER DAXFS_BIN. FILE holds 4 MiB of 0xaa.
 * Both processes map FILE twice (read-write shared, read-only shared). The parent changes the
 * layout; after each change both check what their mappings show:
 *  1 punch [0, 2 MiB), OTHER filled until ENOSPC (it reuses the freed blocks): the read-only
 *    mapping shows zeros there, never OTHER's bytes;
 *  2 a store by the child into the punched range is seen by the parent's mapping and pread;
 *  3 truncate to 1 MiB: an access past the end raises SIGBUS BUS_ADRERR at the address; grown
 *    back to 4 MiB, the range reads zeros;
 *  4 poison inject of a written page: SIGBUS BUS_MCEERR_AR in both;
 *  5 poison clear: the page reads zeros, no signal.
 * Exit 0 when all holds; else 10 * step + who (1 parent, 2 child) and a message. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define MB (1UL << 20)
#define LEN (4 * MB)

static sigjmp_buf sj_env;
static volatile int sig_code, sig_count;
static void *volatile sig_addr;
static const char *file, *other, *daxfs;
static int fd;
static unsigned char *rw, *ro;

static void hdl(int sig, siginfo_t *si, void *ptr)
{
	(void)sig;
	(void)ptr;
	sig_code = si->si_code;
	sig_addr = si->si_addr;
	sig_count++;
	siglongjmp(sj_env, 1);
}

__attribute__((noinline)) static int store(volatile unsigned char *p, unsigned char v)
{
	sig_count = 0;
	if (sigsetjmp(sj_env, 1))
		return 1;
	*p = v;
	return 0;
}

__attribute__((noinline)) static int load(volatile unsigned char *p, unsigned char *v)
{
	sig_count = 0;
	if (sigsetjmp(sj_env, 1))
		return 1;
	*v = *p;
	return 0;
}

static int run(const char *what, unsigned long off)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "%s poison %s %s --offset %lu", daxfs, what, file, off);
	return system(cmd);
}

/* What both processes check after step s. Return: 0 or a message. */
static const char *check(int s, int child)
{
	unsigned char v;
	switch (s) {
	case 1:
		for (unsigned long i = 0; i < 2 * MB; i += 512)
			if (load(ro + i, &v) || v != 0)
				return "punched range does not read zeros";
		return 0;
	case 2:
		if (child)
			return store(rw + 4096, 0x11) ? "the store into the punched range faulted" : 0;
		if (load(rw + 4096, &v) || v != 0x11)
			return "the child's store is not seen through the parent's mapping";
		if (pread(fd, &v, 1, 4096) != 1 || v != 0x11)
			return "the child's store is not seen by pread";
		return 0;
	case 3:
		if (!load(rw + MB + 4096 + 5, &v) || sig_code != BUS_ADRERR ||
		    sig_addr != rw + MB + 4096 + 5)
			return "no SIGBUS BUS_ADRERR past the end (read-write mapping)";
		if (!load(ro + 3 * MB, &v) || sig_code != BUS_ADRERR)
			return "no SIGBUS BUS_ADRERR past the end (read-only mapping)";
		return 0;
	case 4:
		if (load(rw + 3 * MB, &v) || v != 0)
			return "the grown range does not read zeros";
		if (load(rw + 64 * 1024 + 8, &v) || v != 0x77)
			return "written page not seen";
		return 0;
	case 5:
		if (!load(rw + 64 * 1024 + 8, &v) || sig_code != BUS_MCEERR_AR)
			return "no BUS_MCEERR_AR on the poisoned page";
		if (!load(ro + 64 * 1024, &v) || sig_code != BUS_MCEERR_AR)
			return "no BUS_MCEERR_AR on the poisoned page (read-only mapping)";
		return 0;
	case 6:
		if (load(rw + 64 * 1024 + 8, &v) || v != 0)
			return "the cleared page does not read zeros";
		return 0;
	}
	return "unknown step";
}

/* The parent's change before step s. */
static const char *change(int s)
{
	unsigned char buf[65536];
	switch (s) {
	case 1: {
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * MB))
			return "punch failed";
		int g = open(other, O_RDWR | O_CREAT | O_TRUNC, 0644);
		memset(buf, 0x55, sizeof(buf));
		for (off_t o = 0;; o += sizeof(buf))
			if (pwrite(g, buf, sizeof(buf), o) != (ssize_t)sizeof(buf))
				break;
		fsync(g);
		close(g);
		return 0;
	}
	case 2: {
		if (unlink(other))
			return "unlink failed";
		/* The daemon frees the blocks once the kernel forgets the inode: wait for it. */
		for (int t = 0; t < 600; t++) {
			struct statvfs sv;
			if (statvfs(file, &sv) == 0 && sv.f_bfree * sv.f_frsize >= 4 * MB)
				return 0;
			usleep(100000);
		}
		return "the unlinked file's space did not come back";
	}
	case 3:
		return ftruncate(fd, MB) ? "truncate failed" : 0;
	case 4:
		memset(buf, 0x77, 4096);
		if (ftruncate(fd, LEN) || pwrite(fd, buf, 4096, 64 * 1024) != 4096 || fsync(fd))
			return "grow + pwrite failed";
		return 0;
	case 5:
		return run("inject", 64 * 1024) ? "poison inject failed" : 0;
	case 6:
		return run("clear", 64 * 1024) ? "poison clear failed" : 0;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction act;
	int to_child[2], to_parent[2];
	unsigned char v;

	if (argc != 4)
		return 2;
	file = argv[1], other = argv[2], daxfs = argv[3];
	memset(&act, 0, sizeof(act));
	act.sa_sigaction = hdl;
	act.sa_flags = SA_SIGINFO;
	fd = open(file, O_RDWR);
	if (fd < 0 || sigaction(SIGBUS, &act, 0) || pipe(to_child) || pipe(to_parent))
		return 2;
	rw = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ro = mmap(NULL, LEN, PROT_READ, MAP_SHARED, fd, 0);
	if (rw == MAP_FAILED || ro == MAP_FAILED || load(rw, &v) || v != 0xaa || load(ro + LEN - 1, &v) ||
	    v != 0xaa)
		return 3;
	pid_t pid = fork();
	if (pid < 0)
		return 4;
	if (pid == 0) {
		unsigned char s;
		close(to_child[1]);
		close(to_parent[0]);
		while (read(to_child[0], &s, 1) == 1) {
			const char *e = check(s, 1);
			unsigned char r = e ? s : 0;
			if (e)
				fprintf(stderr, "child, step %d: %s\n", s, e);
			if (write(to_parent[1], &r, 1) != 1)
				_exit(5);
		}
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	for (unsigned char s = 1; s <= 6; s++) {
		const char *e = change(s);
		if (!e && s != 2)
			e = check(s, 0);
		if (e) {
			fprintf(stderr, "parent, step %d: %s\n", s, e);
			return 10 * s + 1;
		}
		unsigned char r = 1;
		if (write(to_child[1], &s, 1) != 1 || read(to_parent[0], &r, 1) != 1 || r)
			return 10 * s + 2;
		if (s == 2 && (e = check(s, 0))) {
			fprintf(stderr, "parent, step %d: %s\n", s, e);
			return 10 * s + 1;
		}
	}
	close(to_child[1]);
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		return 70;
	printf("revoke-fork: ok\n");
	return 0;
}
