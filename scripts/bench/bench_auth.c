/*
 * bench_auth - SMTP AUTH verification cost, next to bare crypt_r()
 *
 *     bench_auth [-n ITERATIONS] [-u USERS]
 *
 * Writes a password file of USERS yescrypt users (libcrypt's default
 * cost) plus one SHA-512-crypt user, in a temporary directory, and in the
 * same run times:
 *   crypt_r      the bare hash computation with one reused crypt_data
 *                (the floor any verifier pays);
 *   auth_verify  a known user with the right and with a wrong password,
 *                and an unknown user, which must cost the same as a known
 *                one or the timing tells an attacker which users exist;
 *   load         auth_table_load() of the whole file, which hashes once
 *                per user to refuse unusable hashes at start-up.
 * It prints microseconds per call and the ratios that matter: verify to
 * bare crypt_r, unknown to known user, load to USERS bare hashes.
 */
#include "config.h"

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/auth.h"

#include "bench.h"

static int
make_hash(const char *prefix, const char *pass, struct crypt_data *cd,
          char *out, size_t n)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    const char *r;

    if (crypt_gensalt_rn(prefix, 0, NULL, 0, setting, (int)sizeof(setting)) ==
        NULL)
        return -1;
    r = crypt_r(pass, setting, cd);
    if (r == NULL || r[0] == '*' || (size_t)snprintf(out, n, "%s", r) >= n)
        return -1;
    return 0;
}

/* bare_us - microseconds per crypt_r(pass, hash) */
static double
bare_us(const char *pass, const char *hash, struct crypt_data *cd, int n)
{
    double t0 = bench_now_us();
    int i;

    for (i = 0; i < n; i++)
        if (crypt_r(pass, hash, cd) == NULL)
            return -1;
    return (bench_now_us() - t0) / n;
}

/* verify_us - microseconds per auth_verify(); -1 if a result was wrong */
static double
verify_us(const struct auth_table *t, const char *user, const char *pass,
          int want, int n)
{
    double t0 = bench_now_us();
    int i;

    for (i = 0; i < n; i++)
        if (auth_verify(t, user, pass) != want)
            return -1;
    return (bench_now_us() - t0) / n;
}

int
main(int argc, char **argv)
{
    char dir[] = "/tmp/bench-auth.XXXXXX", path[256];
    char hash_y[CRYPT_OUTPUT_SIZE], hash_6[CRYPT_OUTPUT_SIZE];
    double y_bare, s_bare, right, wrong, unknown, s_verify, load;
    int n = 50, users = 100, c, i, rc = 1;
    struct crypt_data *cd;
    struct auth_table *t = NULL;
    struct err e;
    FILE *fp;

    while ((c = getopt(argc, argv, "n:u:")) != -1) {
        if (c == 'n' && (n = (int)strtol(optarg, NULL, 10)) > 0)
            continue;
        if (c == 'u' && (users = (int)strtol(optarg, NULL, 10)) > 0)
            continue;
        fprintf(stderr, "usage: bench_auth [-n ITERATIONS] [-u USERS]\n");
        return 2;
    }
    if ((cd = calloc(1, sizeof(*cd))) == NULL || mkdtemp(dir) == NULL) {
        perror("bench_auth");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/passwd", dir);
    if ((fp = fopen(path, "w")) == NULL) {
        perror(path);
        goto out;
    }
    for (i = 0; i < users; i++) {
        if (make_hash("$y$", "yes pass", cd, hash_y, sizeof(hash_y)) < 0) {
            fprintf(stderr, "bench_auth: libcrypt has no yescrypt\n");
            fclose(fp);
            goto out;
        }
        fprintf(fp, "user%d:%s\n", i, hash_y);
    }
    if (make_hash("$6$", "sha pass", cd, hash_6, sizeof(hash_6)) < 0) {
        fclose(fp);
        goto out;
    }
    fprintf(fp, "sha:%s\n", hash_6);
    fclose(fp);
    chmod(path, 0640);

    load = bench_now_us();
    if ((t = auth_table_load(path, &e)) == NULL) {
        fprintf(stderr, "bench_auth: %s\n", e.text);
        goto out;
    }
    load = bench_now_us() - load;

    y_bare = bare_us("yes pass", hash_y, cd, n);
    s_bare = bare_us("sha pass", hash_6, cd, n);
    right = verify_us(t, "user0", "yes pass", 1, n);
    wrong = verify_us(t, "user0", "no pass", 0, n);
    unknown = verify_us(t, "nobody", "yes pass", 0, n);
    s_verify = verify_us(t, "sha", "sha pass", 1, n);
    if (right < 0 || wrong < 0 || unknown < 0 || s_verify < 0) {
        fprintf(stderr, "bench_auth: a verification gave a wrong result\n");
        goto out;
    }
    printf("%d iterations, %d yescrypt users + 1 SHA-512-crypt user\n", n,
           users);
    printf("%-34s %10s %8s\n", "", "us/call", "ratio");
    printf("%-34s %10.0f %8s\n", "yescrypt: bare crypt_r", y_bare, "1.00");
    printf("%-34s %10.0f %8.2f  (to bare)\n",
           "yescrypt: verify, right password", right, right / y_bare);
    printf("%-34s %10.0f %8.2f  (to bare)\n",
           "yescrypt: verify, wrong password", wrong, wrong / y_bare);
    printf("%-34s %10.0f %8.2f  (to known user, wrong password)\n",
           "unknown user", unknown, unknown / wrong);
    printf("%-34s %10.0f %8s\n", "sha512crypt: bare crypt_r", s_bare, "1.00");
    printf("%-34s %10.0f %8.2f  (to bare)\n", "sha512crypt: verify", s_verify,
           s_verify / s_bare);
    printf("%-34s %10.0f %8.2f  (to %d bare yescrypt hashes)\n",
           "load of the file", load, load / (users * y_bare + s_bare),
           users + 1);
    rc = 0;
out:
    auth_table_free(t);
    unlink(path);
    rmdir(dir);
    free(cd);
    return rc;
}
