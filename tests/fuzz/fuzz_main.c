/*
 * fuzz_main.c - runs a libFuzzer target without libFuzzer (after libspng's
 * tests/fuzz_main.c): every file named on the command line, or every file
 * in every directory named, is passed once to LLVMFuzzerTestOneInput. This
 * is how `make test` replays the seed corpora and every past crasher with
 * gcc. Prints "N passed, N failed" (a crash fails the whole run, as it
 * should).
 */
#include "core/common.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned g_runs;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (64L << 20)) {
        fclose(f);
        return 0; /* not an input for these targets */
    }
    uint8_t *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    g_runs++;
    return 0;
}

static int run_path(const char *path, unsigned depth)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        perror(path);
        return -1;
    }
    if (S_ISREG(st.st_mode))
        return run_file(path);
    if (!S_ISDIR(st.st_mode) || depth > 8)
        return 0;
    struct dirent **list;
    int n = scandir(path, &list, NULL, alphasort);
    int r = 0;
    for (int i = 0; i < n; i++) {
        if (r == 0 && list[i]->d_name[0] != '.') {
            char child[4096];
            snprintf(child, sizeof(child), "%s/%s", path, list[i]->d_name);
            r = run_path(child, depth + 1);
        }
        free(list[i]);
    }
    free(list);
    return r;
}

int main(int argc, char **argv)
{
    int r = 0;
    for (int i = 1; i < argc && r == 0; i++)
        r = run_path(argv[i], 0);
    printf("%u passed, %d failed\n", g_runs, r < 0 ? 1 : 0);
    return r < 0 ? 1 : 0;
}
