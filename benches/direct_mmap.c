/* benches/direct_mmap.c: the mmap jobs of benches/direct_mmap.sh on one file.
 * Usage: direct_mmap FILE JOB, JOB = seqread | randload | randstore. Prints "JOB NS OPS"
 * (nanoseconds of the job, operations done).
 *   seqread:   first touch of the whole file through a fresh shared mapping, sequential
 *              64-bit loads of every word (mmap and faults included);
 *   randload:  262144 loads of a random 4 KiB page (every word of it), mapping warmed first;
 *   randstore: 262144 stores of a random 4 KiB page, msync(MS_SYNC) of the mapping every 256,
 *              mapping warmed first. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000ull + t.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int fd = open(argv[1], O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st))
		return 2;
	size_t len = st.st_size, pages = len / 4096, ops = 262144;
	volatile uint64_t sink = 0;
	uint64_t seed = 0x9e3779b97f4a7c15ull, t0 = now(), sum = 0;
	const char *job = argv[2];
	uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 3;
	}
	if (strcmp(job, "seqread") == 0) {
		for (size_t i = 0; i < len / 8; i++)
			sum += p[i];
		ops = pages;
	} else {
		for (size_t i = 0; i < len / 8; i += 512)
			sum += p[i];
		if (strcmp(job, "randstore") == 0)
			for (size_t i = 0; i < len / 8; i += 512)
				p[i] = sum;
		msync(p, len, MS_SYNC);
		t0 = now();
		for (size_t k = 0; k < ops; k++) {
			uint64_t *q = p + (rnd(&seed) % pages) * 512;
			if (job[4] == 'l') {
				for (int w = 0; w < 512; w++)
					sum += q[w];
			} else {
				for (int w = 0; w < 512; w++)
					q[w] = k + w;
				if (k % 256 == 255 && msync(p, len, MS_SYNC))
					return 4;
			}
		}
	}
	uint64_t t = now() - t0;
	sink = sum;
	(void)sink;
	printf("%s %llu %zu\n", job, (unsigned long long)t, ops);
	munmap(p, len);
	return 0;
}
