/* broker_host: a standalone broker for tests and benchmarks. Serves named pods on unix sockets
 * with the chosen backend until SIGTERM/SIGINT, then removes every pod, prints its usage, and
 * exits 0 if everything was freed.
 *   broker_host --backend soft|cuda [--workers N] [--pod-processes 1|-1]
 *               --pod NAME=SOCKET[,quota=BYTES][,share=PCT]...
 * --pod-processes 1: one process per pod (the default for cuda), -1: all pods in this process.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "soft_kernels.h"

#define MAX_PODS 16

struct pod_arg {
    char name[IDM_POD_ID_MAX];
    char path[256];
    unsigned long long quota;
    unsigned share;
};

static int parse_pod(const char *s, struct pod_arg *p)
{
    const char *eq = strchr(s, '=');
    if (eq == NULL || eq == s || (size_t)(eq - s) >= sizeof p->name)
        return -1;
    memcpy(p->name, s, (size_t)(eq - s));
    p->name[eq - s] = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", eq + 1);
    char *save, *tok = strtok_r(buf, ",", &save);
    if (tok == NULL)
        return -1;
    snprintf(p->path, sizeof p->path, "%s", tok);
    p->quota = 0;
    p->share = 100;
    while ((tok = strtok_r(NULL, ",", &save)) != NULL) {
        if (strncmp(tok, "quota=", 6) == 0)
            p->quota = strtoull(tok + 6, NULL, 0);
        else if (strncmp(tok, "share=", 6) == 0)
            p->share = (unsigned)strtoul(tok + 6, NULL, 0);
        else
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct broker_config cfg = { .backend = "soft", .workers = 4 };
    struct pod_arg pods[MAX_PODS];
    int npods = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            cfg.backend = argv[++i];
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            cfg.workers = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--pod-processes") == 0 && i + 1 < argc)
            cfg.pod_processes = atoi(argv[++i]);
        else if (strcmp(argv[i], "--libcuda") == 0 && i + 1 < argc)
            cfg.libcuda = argv[++i];
        else if (strcmp(argv[i], "--pod") == 0 && i + 1 < argc && npods < MAX_PODS &&
                 parse_pod(argv[++i], &pods[npods]) == 0)
            npods++;
        else {
            fprintf(stderr, "usage: %s --backend soft|cuda [--workers N] [--libcuda PATH] [--pod-processes 1|-1] "
                            "--pod NAME=SOCKET[,quota=BYTES][,share=PCT] ...\n", argv[0]);
            return 2;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* workers inherit the mask; main waits below */
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(cfg.backend, "soft") == 0 && soft_kernels_register() != 0) {
        fprintf(stderr, "broker_host: cannot register soft kernels\n");
        return 1;
    }
    broker_t *b;
    struct idm_err err = { 0 };
    if (broker_create(&cfg, &b, &err) < 0) {
        fprintf(stderr, "broker_host: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < npods; i++) {
        if (broker_pod_add(b, pods[i].name, pods[i].path, pods[i].quota, pods[i].share, &err) < 0) {
            fprintf(stderr, "broker_host: %s\n", err.msg);
            broker_destroy(b);
            return 1;
        }
    }
    fprintf(stderr, "broker_host: ready (%d pods, backend %s)\n", npods, cfg.backend);
    int sig;
    while (sigwait(&set, &sig) != 0)
        ;
    int rc = 0;
    for (int i = 0; i < npods; i++) {
        struct broker_usage u;
        if (broker_pod_usage(b, pods[i].name, &u, &err) < 0)
            continue;
        (void)broker_pod_remove(b, pods[i].name, NULL);
        fprintf(stderr,
                "broker_host: pod %s: channels %llu, calls %llu, errors %llu, launches %llu, "
                "htod %llu B, dtoh %llu B, mem peak %llu B, in use before removal (snapshot) %llu B, busy %.3f ms, "
                "turns %.3f ms, waited %.3f ms\n",
                pods[i].name, (unsigned long long)u.channels_total, (unsigned long long)u.calls,
                (unsigned long long)u.errors, (unsigned long long)u.launches,
                (unsigned long long)u.bytes_htod, (unsigned long long)u.bytes_dtoh,
                (unsigned long long)u.mem_peak, (unsigned long long)u.mem_in_use,
                (double)u.busy_ns / 1e6, (double)u.gpu_turn_ns / 1e6, (double)u.gpu_wait_ns / 1e6);
    }
    broker_destroy(b);
    return rc;
}
