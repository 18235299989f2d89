/*
 * navarch-shim: the per-container supervisor, compiled (nodeagent/nativeshim.py builds it).
 *
 * The agent's fork server forks a Python child per container that becomes the session leader, joins the
 * container's cgroups, shields itself from the OOM killer and then execs this program, which does what
 * nodeagent/shim.py does in Python, in well under a megabyte of private memory:
 *
 *   navarch-shim FD    FD: a memfd holding the spec as NUL-terminated fields, in this order:
 *     state_dir, log_path, log_max_bytes, log_keep, uid, gid ("-": none), n_groups, group...,
 *     rlimit_as, oom_score_adj ("-": keep), cwd, argc, argv..., envc, env ("K=V")...
 *
 * 1. starts the workload (signals back to their defaults, its OOM adjustment back, rlimit, cwd, then groups,
 *    gid and uid) in this process's group, with stdout and stderr on pipes;
 * 2. copies both pipes into the container's log in the CRI format, one record per line, at most
 *    MAX_RECORD bytes each (longer lines become partial "P" records), rotating by size, keeping N files;
 * 3. writes started.json ({"pid", "started_at"}) once the workload runs, and exit.json (a Termination)
 *    when it has ended, each atomically (O_EXCL temp file + rename) with mode 0600;
 * 4. as a subreaper, kills whatever the workload left behind (daemons that setsid'd away) when it ends.
 *
 * It ignores SIGTERM/SIGINT/SIGHUP so it outlives a graceful stop of its workload; SIGKILL ends it (the agent
 * then records the end itself). The record formats are nodeagent/shimspec.py's; tests/e2e/test_native_shim.py
 * compares this program's records with the Python shim's for the same workloads.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORD 16384
#define MAX_SPEC (64 * 1024 * 1024)
#define MAX_FIELDS (1 << 20)

extern char **environ;

static char *state_dir, *log_path, *cwd_path;
static long long log_max_bytes, rlimit_as;
static int log_keep;
static long long uid = -1, gid = -1;
static gid_t *groups;
static int n_groups;
static char *oom_adj;
static char **argv_w, **envp_w;

static int log_fd = -1;
static long long log_size;
static int sigchld_pipe[2];

static void now_rfc3339(char *out, size_t n) {
    struct timespec ts;
    struct tm tm;
    char base[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%09ldZ", base, ts.tv_nsec);
}

/* ---------------------------------------------------------------- the spec */

static char **fields;
static int n_fields, next_field;

static int load_spec(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > MAX_SPEC) return -1;
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) return -1;
    off_t done = 0;
    while (done < st.st_size) {
        ssize_t got = pread(fd, buf + done, (size_t)(st.st_size - done), done);
        if (got <= 0) return -1;
        done += got;
    }
    buf[st.st_size] = '\0';
    close(fd);
    fields = calloc(MAX_FIELDS, sizeof *fields);
    if (!fields) return -1;
    for (char *p = buf; p < buf + st.st_size && n_fields < MAX_FIELDS; p += strlen(p) + 1) fields[n_fields++] = p;
    return 0;
}

static char *field(void) { return next_field < n_fields ? fields[next_field++] : NULL; }

static int number(long long *out, int optional) {
    char *f = field(), *end;
    if (!f) return -1;
    if (optional && strcmp(f, "-") == 0) return 0;
    errno = 0;
    long long v = strtoll(f, &end, 10);
    if (errno || *end || end == f) return -1;
    *out = v;
    return 0;
}

static char **string_list(void) {
    long long n;
    if (number(&n, 0) != 0 || n < 0 || n > n_fields - next_field) return NULL;
    char **list = calloc((size_t)n + 1, sizeof *list);
    if (!list) return NULL;
    for (long long i = 0; i < n; i++) list[i] = field();
    return list;
}

static int parse_spec(void) {
    long long keep, n;
    if (!(state_dir = field()) || !(log_path = field())) return -1;
    if (number(&log_max_bytes, 0) || number(&keep, 0) || number(&uid, 1) || number(&gid, 1)) return -1;
    log_keep = (int)keep;
    if (number(&n, 0) || n < 0 || n > 65536) return -1;
    n_groups = (int)n;
    groups = calloc((size_t)n_groups + 1, sizeof *groups);
    for (int i = 0; i < n_groups; i++) {
        long long g;
        if (number(&g, 0)) return -1;
        groups[i] = (gid_t)g;
    }
    if (number(&rlimit_as, 0)) return -1;
    oom_adj = field();
    if (!oom_adj || !(cwd_path = field())) return -1;
    if (strcmp(oom_adj, "-") == 0) oom_adj = NULL;
    if (!(argv_w = string_list()) || !argv_w[0]) return -1;
    if (!(envp_w = string_list())) return -1;
    return 0;
}

/* ---------------------------------------------------------------- records */

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* Write state_dir/name atomically, mode 0600; body() prints the JSON object. */
static void write_record(const char *name, void (*body)(FILE *, const void *), const void *arg) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", state_dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) { perror(tmp); return; }
    FILE *f = fdopen(fd, "w");
    if (!f) { close(fd); return; }
    body(f, arg);
    if (fclose(f) != 0) { perror(tmp); return; }
    if (rename(tmp, path) != 0) perror(path);
}

struct started { pid_t pid; const char *at; };

static void started_body(FILE *f, const void *arg) {
    const struct started *s = arg;
    fprintf(f, "{\"pid\": %d, \"started_at\": ", (int)s->pid);
    json_string(f, s->at);
    fputc('}', f);
}

struct termination { int exit_code, signal, started; const char *reason, *message; };

static void termination_body(FILE *f, const void *arg) {
    const struct termination *t = arg;
    char at[64];
    now_rfc3339(at, sizeof at);
    fprintf(f, "{\"exit_code\": %d, \"signal\": %d, \"reason\": ", t->exit_code, t->signal);
    json_string(f, t->reason);
    fputs(", \"message\": ", f);
    json_string(f, t->message);
    fputs(", \"finished_at\": ", f);
    json_string(f, at);
    fprintf(f, ", \"started\": %s, \"started_at\": \"\", \"container_id\": \"\"}", t->started ? "true" : "false");
}

/* ---------------------------------------------------------------- the log */

static void open_log(void) {
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (log_fd < 0) { perror(log_path); return; }
    if (uid >= 0 && fchown(log_fd, (uid_t)uid, gid >= 0 ? (gid_t)gid : (gid_t)-1) != 0 && errno != EPERM)
        perror("fchown");
    struct stat st;
    log_size = fstat(log_fd, &st) == 0 ? st.st_size : 0;
}

static void rotate(void) {
    char older[4200], newer[4200];
    close(log_fd);
    for (int i = log_keep - 1; i > 0; i--) {
        snprintf(older, sizeof older, "%s.%d", log_path, i);
        snprintf(newer, sizeof newer, "%s.%d", log_path, i + 1);
        if (access(older, F_OK) == 0) rename(older, newer);
    }
    if (log_keep > 0) {
        snprintf(newer, sizeof newer, "%s.1", log_path);
        rename(log_path, newer);
    } else {
        unlink(log_path);
    }
    open_log();
}

/* One CRI record: "<time> <stream> F|P <line>\n"; F when the piece ended its line. */
static void log_record(const char *stream, const char *data, size_t len, int full) {
    if (log_fd < 0) return;
    char at[64];
    now_rfc3339(at, sizeof at);
    size_t head = strlen(at) + 1 + strlen(stream) + 3;
    size_t total = head + len + 1;
    char *rec = malloc(total);
    if (!rec) return;
    snprintf(rec, head + 1, "%s %s %c ", at, stream, full ? 'F' : 'P');
    memcpy(rec + head, data, len);
    rec[head + len] = '\n';
    if (log_size && log_size + (long long)total > log_max_bytes) rotate();
    if (log_fd >= 0) {
        size_t off = 0;
        while (off < total) {
            ssize_t n = write(log_fd, rec + off, total - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            off += (size_t)n;
        }
        log_size += (long long)total;
    }
    free(rec);
}

struct stream { const char *name; int fd; char buf[MAX_RECORD]; size_t len; };

/* Emit every complete line, and a partial record when MAX_RECORD bytes hold no newline (as the Python
 * shim's readline(MAX_RECORD) does); at EOF whatever is left is a partial record. */
static void drain(struct stream *s, int eof) {
    size_t start = 0;
    while (start < s->len) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (nl) {
            log_record(s->name, s->buf + start, (size_t)(nl - (s->buf + start)), 1);
            start = (size_t)(nl - s->buf) + 1;
        } else if (s->len - start == MAX_RECORD || eof) {
            log_record(s->name, s->buf + start, s->len - start, 0);
            start = s->len;
        } else {
            break;
        }
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

/* Read what is there; returns 0 at EOF (or error), 1 otherwise. */
static int pump(struct stream *s) {
    ssize_t n = read(s->fd, s->buf + s->len, MAX_RECORD - s->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    if (n <= 0) {
        drain(s, 1);
        close(s->fd);
        s->fd = -1;
        return 0;
    }
    s->len += (size_t)n;
    drain(s, 0);
    return 1;
}

/* ---------------------------------------------------------------- processes */

static void on_sigchld(int sig) {
    (void)sig;
    int saved = errno;
    ssize_t ignored = write(sigchld_pipe[1], "x", 1);
    (void)ignored;
    errno = saved;
}

/* SIGKILL every direct child (orphans of the workload are re-parented to us, a subreaper); how many. */
static int kill_children(void) {
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    int found = 0;
    pid_t me = getpid();
    struct dirent *e;
    while ((e = readdir(proc))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        char *paren = strrchr(buf, ')');
        int ppid;
        if (!paren || sscanf(paren + 1, " %*c %d", &ppid) != 1 || ppid != me) continue;
        kill((pid_t)atoi(e->d_name), SIGKILL);
        found++;
    }
    closedir(proc);
    return found;
}

static void reap(void) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

static void start_error(const char *message) {
    struct termination t = {128, 0, 0, "StartError", message};
    write_record("exit.json", termination_body, &t);
}

enum { STAGE_CWD = 1, STAGE_EXEC = 2, STAGE_SETUP = 3 };

static void child(int out, int err, int report) {
    int stage = STAGE_SETUP;
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) goto fail;
    if (oom_adj) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, oom_adj, strlen(oom_adj)) < 0) goto fail;
        close(fd);
    }
    if (rlimit_as > 0) {
        struct rlimit rl = {(rlim_t)rlimit_as, (rlim_t)rlimit_as};
        if (setrlimit(RLIMIT_AS, &rl) != 0) goto fail;
    }
    stage = STAGE_CWD;
    if (chdir(cwd_path) != 0) goto fail;
    stage = STAGE_SETUP;
    /* Privileges last: the steps above need them. Groups, then gid, then uid. */
    if (uid >= 0) {
        if (setgroups((size_t)n_groups, groups) != 0) goto fail;
        if (gid >= 0 && setgid((gid_t)gid) != 0) goto fail;
        if (setuid((uid_t)uid) != 0) goto fail;
    }
    stage = STAGE_EXEC;
    environ = envp_w; /* execvp looks the command up in the workload's PATH, as subprocess does */
    execvp(argv_w[0], argv_w);
fail:;
    int report_errno[2] = {stage, errno};
    ssize_t ignored = write(report, report_errno, sizeof report_errno);
    (void)ignored;
    _exit(127);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: navarch-shim SPEC_FD\n"); return 2; }
    if (load_spec(atoi(argv[1])) != 0 || parse_spec() != 0) { fprintf(stderr, "navarch-shim: bad spec\n"); return 2; }
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    open_log();

    int out[2], err[2], report[2];
    if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
        pipe2(report, O_CLOEXEC)) {
        start_error(strerror(errno));
        return 0;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    pid_t pid = fork();
    if (pid < 0) { start_error(strerror(errno)); return 0; }
    if (pid == 0) child(out[1], err[1], report[1]);
    close(out[1]);
    close(err[1]);
    close(report[1]);
    int failure[2];
    ssize_t got;
    do { got = read(report[0], failure, sizeof failure); } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof failure) {
        char message[8192];
        if (failure[0] == STAGE_CWD) snprintf(message, sizeof message, "working directory %s: %s", cwd_path, strerror(failure[1]));
        else if (failure[0] == STAGE_EXEC) snprintf(message, sizeof message, "%s: %s", argv_w[0], strerror(failure[1]));
        else snprintf(message, sizeof message, "%s", strerror(failure[1]));
        waitpid(pid, NULL, 0);
        start_error(message);
        return 0;
    }
    char at[64];
    now_rfc3339(at, sizeof at);
    struct started s = {pid, at};
    write_record("started.json", started_body, &s);

    static struct stream streams[2];
    streams[0].name = "stdout"; streams[0].fd = out[0];
    streams[1].name = "stderr"; streams[1].fd = err[0];
    int status = 0, exited = 0;
    struct timespec drain_deadline = {0, 0};
    for (;;) {
        struct pollfd fds[3];
        int n = 0;
        fds[n++] = (struct pollfd){sigchld_pipe[0], POLLIN, 0};
        for (int i = 0; i < 2; i++) if (streams[i].fd >= 0) fds[n++] = (struct pollfd){streams[i].fd, POLLIN, 0};
        if (exited && n == 1) break;
        int timeout = exited ? 100 : -1;
        if (poll(fds, (nfds_t)n, timeout) < 0 && errno != EINTR) break;
        if (fds[0].revents & POLLIN) {
            char sink[64];
            while (read(sigchld_pipe[0], sink, sizeof sink) > 0) {}
        }
        for (int i = 1; i < n; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            for (int k = 0; k < 2; k++) if (streams[k].fd == fds[i].fd) pump(&streams[k]);
        }
        if (!exited) {
            int st;
            pid_t w;
            while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
                if (w == pid) { status = st; exited = 1; }
            }
            if (exited) {
                /* The container ends with its main process: what it left behind is killed. */
                for (int round = 0; round < 50 && kill_children() > 0; round++) {
                    reap();
                    usleep(10000);
                }
                reap();
                clock_gettime(CLOCK_MONOTONIC, &drain_deadline);
                drain_deadline.tv_sec += 5;
            }
        } else {
            struct timespec now;
            reap();
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec > drain_deadline.tv_sec) break;
        }
    }
    for (int i = 0; i < 2; i++) if (streams[i].fd >= 0) { drain(&streams[i], 1); close(streams[i].fd); }
    if (log_fd >= 0) close(log_fd);
    struct termination t = {0, 0, 1, "Completed", ""};
    if (WIFEXITED(status)) t.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) { t.signal = WTERMSIG(status); t.exit_code = 128 + t.signal; }
    if (t.exit_code != 0) t.reason = "Error";
    write_record("exit.json", termination_body, &t);
    return 0;
}
