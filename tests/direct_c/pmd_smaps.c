/* daxfs direct-mapping test: how the kernel maps a file mapping, read from /proc/self/smaps.
 * Usage: pmd_smaps FILE LEN. Maps LEN bytes of FILE MAP_SHARED read-write, loads one byte of
 * every page, then prints the mapping's smaps fields: "aligned2m 0|1" (whether the address is
 * 2 MiB-aligned), "rss KB", "shmem_pmd KB" (ShmemPmdMapped), "file_pmd KB" (FilePmdMapped) and
 * "path PATH" (what the mapping maps: the region file under daxfs exec, FILE without it). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		perror("open");
		return 2;
	}
	size_t len = strtoul(argv[2], NULL, 0);
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 3;
	}
	volatile unsigned long sum = 0;
	for (size_t i = 0; i < len; i += 4096)
		sum += p[i];
	printf("aligned2m %d\n", ((unsigned long)p & ((2UL << 20) - 1)) == 0);

	FILE *s = fopen("/proc/self/smaps", "r");
	if (!s) {
		perror("smaps");
		return 4;
	}
	char line[4096];
	int in = 0, found = 0;
	while (fgets(line, sizeof line, s)) {
		unsigned long lo, hi;
		char path[4096] = "";
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %4095s", &lo, &hi, path) >= 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = lo == (unsigned long)p;
			if (in) {
				found = 1;
				printf("path %s\n", path);
			}
			continue;
		}
		unsigned long kb;
		if (!in)
			continue;
		if (sscanf(line, "Rss: %lu kB", &kb) == 1)
			printf("rss %lu\n", kb);
		else if (sscanf(line, "ShmemPmdMapped: %lu kB", &kb) == 1)
			printf("shmem_pmd %lu\n", kb);
		else if (sscanf(line, "FilePmdMapped: %lu kB", &kb) == 1)
			printf("file_pmd %lu\n", kb);
	}
	if (!found) {
		fprintf(stderr, "no smaps entry starts at %p\n", (void *)p);
		return 5;
	}
	return 0;
}
