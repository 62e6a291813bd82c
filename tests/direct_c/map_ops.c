/* daxfs direct-mapping test: MAP_PRIVATE copy on write, MAP_FIXED over a direct mapping,
 * partial munmap, mprotect adding PROT_WRITE over a hole, mremap growth and move, a read-only
 * mapping of a hole, MADV_REMOVE. Usage: map_ops FILE REGION. FILE holds 4 MiB of 0xaa then
 * a 2 MiB hole (size 6 MiB). Exit 0 when all holds; else the failed step and a message. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MB (1UL << 20)
#define FAIL(n, msg)                                            \
	do {                                                    \
		fprintf(stderr, "step %d: %s\n", n, msg);       \
		return n;                                       \
	} while (0)

static int maps_region(const char *region)
{
	char line[4096];
	int n = 0;
	FILE *m = fopen("/proc/self/maps", "r");
	while (m && fgets(line, sizeof(line), m))
		if (strstr(line, region))
			n++;
	if (m)
		fclose(m);
	return n;
}

int main(int argc, char **argv)
{
	unsigned char v;
	if (argc != 3)
		return 2;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0)
		return 2;
	/* 1: private copy on write: the store stays in this mapping. */
	unsigned char *pv = mmap(NULL, 4 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (pv == MAP_FAILED || pv[4096] != 0xaa)
		FAIL(1, "private mapping");
	if (!maps_region(argv[2]))
		FAIL(1, "the private mapping does not map the region");
	pv[4096] = 0x01;
	if (pread(fd, &v, 1, 4096) != 1 || v != 0xaa || pv[4096] != 0x01)
		FAIL(1, "a private store reached the file");
	/* 2: partial munmap, then MAP_FIXED anonymous memory over the rest. */
	if (munmap(pv, 2 * MB) || pv[2 * MB] != 0xaa)
		FAIL(2, "partial munmap");
	unsigned char *an = mmap(pv + 2 * MB, 2 * MB, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (an != pv + 2 * MB || an[0] != 0)
		FAIL(2, "MAP_FIXED anonymous over a direct mapping");
	munmap(an, 2 * MB);
	if (maps_region(argv[2]))
		FAIL(2, "the region is still mapped after every direct mapping went");
	/* 3: a read-only shared mapping of the hole reads zeros; mprotect adds PROT_WRITE and the
	 * store allocates (reaches the file). */
	unsigned char *sh = mmap(NULL, 2 * MB, PROT_READ, MAP_SHARED, fd, 4 * MB);
	if (sh == MAP_FAILED || sh[100] != 0)
		FAIL(3, "read-only mapping of a hole");
	if (mprotect(sh, 2 * MB, PROT_READ | PROT_WRITE))
		FAIL(3, "mprotect");
	sh[100] = 0x42;
	if (pread(fd, &v, 1, 4 * MB + 100) != 1 || v != 0x42)
		FAIL(3, "a store after mprotect did not reach the file");
	/* 4: mremap: grow in place or move; contents stay those of the file. */
	unsigned char *g = mremap(sh, 2 * MB, 4 * MB, MREMAP_MAYMOVE);
	if (g == MAP_FAILED || g[100] != 0x42)
		FAIL(4, "mremap growth");
	munmap(g, 4 * MB);
	unsigned char *a = mmap(NULL, 2 * MB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	unsigned char *b = mmap(NULL, 4 * MB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		FAIL(4, "mmap");
	unsigned char *c = mremap(a, 2 * MB, 2 * MB, MREMAP_MAYMOVE | MREMAP_FIXED, b + 2 * MB);
	if (c != b + 2 * MB || c[8] != 0xaa)
		FAIL(4, "mremap to a fixed address");
	c[8] = 0x99;
	if (pread(fd, &v, 1, 8) != 1 || v != 0x99)
		FAIL(4, "a store through the moved mapping did not reach the file");
	/* 5: MADV_REMOVE punches the file (not the region). */
	if (madvise(c, 4096, MADV_REMOVE) || c[8] != 0)
		FAIL(5, "MADV_REMOVE");
	if (pread(fd, &v, 1, 8) != 1 || v != 0)
		FAIL(5, "MADV_REMOVE did not punch the file");
	if (pread(fd, &v, 1, 4096) != 1 || v != 0xaa)
		FAIL(5, "MADV_REMOVE punched too much");
	munmap(b, 4 * MB);
	printf("map-ops: ok\n");
	return 0;
}
