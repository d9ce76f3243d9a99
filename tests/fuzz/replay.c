/* Unit test: feeds every file of the given directories through a fuzz
 * harness, so that an input that once crashed stays fixed:
 *   replay DIR...          tests/fuzz/fuzz_desc.c (descriptor, reference)
 *   replay --cache DIR...  tests/fuzz/fuzz_cache.c (program-cache entries)
 *   replay --tensor DIR... tests/fuzz/fuzz_tensor_file.c (benchmark tensor files)
 * Inputs listed in known_failures are
 * skipped with a note: their bug is in code this suite does not own and is
 * described in docs/RELIABILITY.md. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_cache.h"
#include "fuzz_desc.h"
#include "fuzz_tensor_file.h"

/* The harness inputs go through; @return 1 when the input ran to the end. */
static int (*harness)(const uint8_t *data, size_t size) = ps_fuzz_desc_one;

/* File names (in tests/fuzz/regressions/) of open bugs, with a short note. */
static const struct {
    const char *file;
    const char *note;
} known_failures[] = {
    {"", ""}, /* none open */
};

static const char *known_failure(const char *name)
{
    for (size_t i = 0; i < sizeof known_failures / sizeof known_failures[0]; i++)
        if (known_failures[i].file[0] && strcmp(name, known_failures[i].file) == 0)
            return known_failures[i].note;
    return NULL;
}

static int replay_file(const char *path, size_t *ran)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = grown;
        }
        const size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *ran += (size_t)harness(buf, len);
    free(buf);
    return 0;
}

/* @return files replayed, or -1 on an I/O problem. */
static long replay_dir(const char *dir, size_t *ran)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open directory %s\n", dir);
        return -1;
    }
    long files = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README.md") == 0)
            continue;
        const char *note = known_failure(e->d_name);
        if (note) {
            printf("# SKIP known failure %s/%s: %s\n", dir, e->d_name, note);
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (replay_file(path, ran) != 0) {
            closedir(d);
            return -1;
        }
        files++;
    }
    closedir(d);
    return files;
}

int main(int argc, char **argv)
{
    size_t ran = 0;
    long total = 0;
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--cache") == 0) {
        harness = ps_fuzz_cache_one;
        first = 2;
    } else if (argc > 1 && strcmp(argv[1], "--tensor") == 0) {
        harness = ps_fuzz_tensor_file_one;
        first = 2;
    }
    for (int i = first; i < argc; i++) {
        const long n = replay_dir(argv[i], &ran);
        if (n < 0)
            return 1;
        printf("# %s: %ld inputs\n", argv[i], n);
        total += n;
    }
    printf("# %ld inputs replayed, %zu ran to the end (reference run, cache hit, file "
           "accepted)\n",
           total,
           ran);
    /* An empty corpus would make this test pass without testing anything. */
    return total > 0 && ran > 0 ? 0 : 1;
}
