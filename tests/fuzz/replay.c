/*
 * replay - run a libFuzzer target over saved inputs without libFuzzer
 *
 * Linked with one tests/fuzz/fuzz_*.c file, this gives a plain program
 * that feeds each file named on the command line (or each file in a named
 * directory) to LLVMFuzzerTestOneInput once. The suite runs it over the
 * crashers kept in tests/data/fuzz/ so a fixed bug stays fixed, under the
 * sanitizers in CI.
 */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
replay_file(const char *path)
{
    FILE *fp;
    char *data;
    long size;

    if ((fp = fopen(path, "rb")) == NULL) {
        perror(path);
        return -1;
    }
    if (fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 ||
        fseek(fp, 0, SEEK_SET) != 0) {
        perror(path);
        fclose(fp);
        return -1;
    }
    if ((data = malloc((size_t)size + 1)) == NULL) {
        fclose(fp);
        return -1;
    }
    if (fread(data, 1, (size_t)size, fp) != (size_t)size) {
        perror(path);
        free(data);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    LLVMFuzzerTestOneInput((const uint8_t *)data, (size_t)size);
    free(data);
    return 0;
}

int
main(int argc, char **argv)
{
    int i, n = 0, failed = 0;

    for (i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *de;
            char path[4096];

            if (d == NULL) {
                perror(argv[i]);
                return 1;
            }
            while ((de = readdir(d)) != NULL) {
                if (de->d_name[0] == '.')
                    continue;
                snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
                failed |= replay_file(path) < 0;
                n++;
            }
            closedir(d);
        } else {
            failed |= replay_file(argv[i]) < 0;
            n++;
        }
    }
    printf("replayed %d input(s)\n", n);
    return failed ? 1 : 0;
}
