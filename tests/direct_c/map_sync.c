/* daxfs direct-mapping test: MAP_SHARED_VALIDATE|MAP_SYNC|MAP_POPULATE of 2 x 2 MiB, stores
 * and loads through the mapping. Usage: map_sync FILE REGION MODE (MODE: sync = MAP_SYNC must
 * succeed; plain = MAP_SHARED only). Prints "mapped-region yes|no" (whether /proc/self/maps maps
 * REGION) and exits 0 when every store read back through the mapping. */
#include <fcntl.h>
#include <linux/mman.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LEN (4UL << 20)

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		perror("open");
		return 2;
	}
	int sync = strcmp(argv[3], "sync") == 0;
	int flags = sync ? MAP_SHARED_VALIDATE | MAP_SYNC | MAP_POPULATE : MAP_SHARED;
	unsigned char *p = mmap(NULL, 2 * (2UL << 20), PROT_READ | PROT_WRITE, flags, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 3;
	}
	for (unsigned long i = 0; i < LEN; i += 512)
		p[i] = (unsigned char)(i / 512 * 7 + 1);
	for (unsigned long i = 0; i < LEN; i += 512)
		if (p[i] != (unsigned char)(i / 512 * 7 + 1)) {
			fprintf(stderr, "load at %lu differs\n", i);
			return 4;
		}
	if (msync(p, LEN, MS_SYNC)) {
		perror("msync");
		return 5;
	}
	char line[4096];
	int mapped = 0;
	FILE *m = fopen("/proc/self/maps", "r");
	while (m && fgets(line, sizeof(line), m))
		if (strstr(line, argv[2]))
			mapped = 1;
	printf("mapped-region %s\n", mapped ? "yes" : "no");
	munmap(p, LEN);
	return 0;
}
