/* daxfs direct-mapping test: pages that become valid when the file grows are mapped before the
 * growing call returns, so a system call can copy from them at once (xfstests generic/638: a
 * pwritev whose buffers are a shared mapping of the same file, made while the file was empty).
 * Usage: grow_source FILE. FILE exists and is empty.
 *  1 map 4 pages read-write shared and read-only shared, all past the end of the file;
 *  2 pwrite 12 bytes of 0xaa at the start of pages 0 and 1 (each call grows the file);
 *  3 pwritev from the read-write mapping (both pages' first 12 bytes) to the end of page 1:
 *    24 bytes written, not EFAULT, and the mapping and pread see them;
 *  4 the same from the read-only mapping, into page 2;
 *  5 ftruncate to 4 pages: page 3 is a hole; a pwrite from the read-only mapping's page 3
 *    writes zeros.
 * Exit 0 and "grow-source: ok" when all holds; else the step and a message. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define PG 4096
#define LEN 12

static void fail(int step, const char *what)
{
	printf("grow-source: step %d: %s (errno %d: %s)\n", step, what, errno, strerror(errno));
	exit(step);
}

static void expect(int step, int fd, off_t off, int byte, size_t n)
{
	unsigned char b[64];
	if (pread(fd, b, n, off) != (ssize_t)n)
		fail(step, "short pread");
	for (size_t i = 0; i < n; i++)
		if (b[i] != byte)
			fail(step, "pread sees other bytes");
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0)
		fail(1, "open");
	unsigned char *rw = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	unsigned char *ro = mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, fd, 0);
	if (rw == MAP_FAILED || ro == MAP_FAILED)
		fail(1, "mmap");
	unsigned char buf[LEN];
	memset(buf, 0xaa, LEN);
	for (int i = 0; i < 2; i++)
		if (pwrite(fd, buf, LEN, i * PG) != LEN)
			fail(2, "pwrite");
	struct iovec iov[2] = { { rw, LEN }, { rw + PG, LEN } };
	ssize_t n = pwritev(fd, iov, 2, 2 * PG - LEN);
	if (n != 2 * LEN)
		fail(3, "pwritev from the read-write mapping");
	expect(3, fd, 2 * PG - LEN, 0xaa, 2 * LEN);
	for (int i = 0; i < 2 * LEN; i++)
		if (rw[2 * PG - LEN + i] != 0xaa)
			fail(3, "the mapping does not see the pwritev");
	struct iovec iov2[2] = { { ro, LEN }, { ro + PG, LEN } };
	n = pwritev(fd, iov2, 2, 2 * PG + LEN);
	if (n != 2 * LEN)
		fail(4, "pwritev from the read-only mapping");
	expect(4, fd, 2 * PG + LEN, 0xaa, 2 * LEN);
	if (ftruncate(fd, 4 * PG) < 0)
		fail(5, "ftruncate");
	memset(buf, 0x55, LEN);
	if (pwrite(fd, buf, LEN, 0) != LEN)
		fail(5, "pwrite");
	if (pwrite(fd, ro + 3 * PG, LEN, 0) != LEN)
		fail(5, "pwrite from the read-only mapping's hole page");
	expect(5, fd, 0, 0, LEN);
	printf("grow-source: ok\n");
	return 0;
}
