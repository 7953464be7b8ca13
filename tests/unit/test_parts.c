/*
 * test_parts - relaychaind and relaychain build the configuration from
 * the same parts
 *
 * The daemon (core/daemon/parts.c) and the commands (core/cli/parts.c)
 * each keep their list of the layers whose keys relaychain.conf holds,
 * and of what a runtime holds besides the configuration: neither layer
 * may use the other's, and no layer below them knows both front ends.
 * "relaychain check" refuses what the daemon would only while the lists
 * are the same, entry for entry and in the same order (a part's check
 * may read the keys of those before it).
 */
#include "config.h"

#include "unit.h"

#include "cli/parts.h"
#include "daemon/daemon_int.h"

static void
test_conf_parts(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; daemon_parts[i] != NULL || parts_all[i] != NULL; i++) {
        char name[32];

        snprintf(name, sizeof(name), "conf part %zu", i);
        if (daemon_parts[i] == NULL || parts_all[i] == NULL)
            unit_fail(name,
                      "got %s in the daemon's list, want %s as in "
                      "the commands'",
                      daemon_parts[i] ? daemon_parts[i]->name : "the end",
                      parts_all[i] ? parts_all[i]->name : "the end");
        unit_str_eq(name, daemon_parts[i]->name, parts_all[i]->name);
        if (daemon_parts[i] != parts_all[i])
            unit_fail(name, "got another %s part in the daemon's list",
                      daemon_parts[i]->name);
    }
    if (i == 0)
        unit_fail("conf parts", "got empty lists, want the layers");
}

static void
test_runtime_parts(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; daemon_runtime_parts[i] != NULL || parts_runtime[i] != NULL;
         i++) {
        char name[32];

        snprintf(name, sizeof(name), "runtime part %zu", i);
        if (daemon_runtime_parts[i] == NULL || parts_runtime[i] == NULL)
            unit_fail(name,
                      "got %s in the daemon's list, want %s as in the "
                      "commands'",
                      daemon_runtime_parts[i] ? daemon_runtime_parts[i]->name
                                              : "the end",
                      parts_runtime[i] ? parts_runtime[i]->name : "the end");
        unit_str_eq(name, daemon_runtime_parts[i]->name,
                    parts_runtime[i]->name);
        if (daemon_runtime_parts[i] != parts_runtime[i])
            unit_fail(name, "got another %s part in the daemon's list",
                      daemon_runtime_parts[i]->name);
    }
    if (i == 0)
        unit_fail("runtime parts", "got empty lists, want the SMTP front "
                                   "end's part");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_parts),
        cmocka_unit_test(test_runtime_parts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
