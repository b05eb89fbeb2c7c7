/* O_TMPFILE and mkostemp (the stderr capture), posix_openpt, grantpt, unlockpt and ptsname (the
   benchmark's pseudo-terminal). */
#define _GNU_SOURCE 1
#define NCURSES_WIDECHAR 1
#define _XOPEN_SOURCE_EXTENDED 1
#include <locale.h>
#include <ncursesw/curses.h>
#include <ncursesw/term.h>
#include <stdlib.h>
#include <stdio.h>
#include <termios.h>
#include <unistd.h>
#include <string.h>
#include "CursesShim.h"

int turf_attr_bold(void) { return (int)A_BOLD; }
int turf_attr_reverse(void) { return (int)A_REVERSE; }
int turf_attr_dim(void) { return (int)A_DIM; }
int turf_color_pair(int n) { return (int)COLOR_PAIR(n); }
int turf_key_f(int n) { return KEY_F(n); }
int turf_lines(void) { return LINES; }
int turf_cols(void) { return COLS; }
int turf_colors(void) { return COLORS; }

static int started = 0;
static struct termios saved;
static int saved_ok = 0;

void turf_save_termios(void) {
    if (tcgetattr(STDIN_FILENO, &saved) == 0) saved_ok = 1;
}

int turf_check_terminal(void) {
    const char *term = getenv("TERM");
    if (term == NULL || term[0] == 0) return 1;
    int err = 0;
    /* With an error pointer, setupterm reports instead of printing and exiting. */
    if (setupterm(term, STDOUT_FILENO, &err) != OK) return err == -1 ? 3 : 2;
    const char *cup = tigetstr("cup");
    int usable = cup != NULL && cup != (char *)-1;
    del_curterm(cur_term);
    cur_term = NULL;
    return usable ? 0 : 4;
}

static SCREEN *screen = NULL;

int turf_curses_start(void) {
    setlocale(LC_ALL, "");
    int problem = turf_check_terminal();
    if (problem != 0) return problem;
    turf_save_termios();
    /* newterm, not initscr: initscr prints its error to stderr (captured while we play) and
       exits; newterm returns NULL and lets us say what is wrong. */
    screen = newterm(NULL, stdout, stdin);
    if (screen == NULL) return 2;
    set_term(screen);
    started = 1;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    return 0;
}

void turf_curses_stop(void) {
    if (!started) return;
    started = 0;
    curs_set(1);
    endwin();
    if (screen != NULL) { delscreen(screen); screen = NULL; }
}

int turf_curses_is_started(void) { return started; }

void turf_draw(int y, int x, const wchar_t *s, int attrs, int pair) {
    attr_set((attr_t)attrs, (short)pair, NULL);
    mvaddwstr(y, x, s);
}

int turf_read_key(unsigned int *ch) {
    wint_t w = 0;
    int r = get_wch(&w);
    if (r == ERR) return 0;
    *ch = (unsigned int)w;
    return r == KEY_CODE_YES ? 2 : 1;
}

void turf_refresh(void) { refresh(); }
void turf_clear(void) { clear(); }
int turf_init_pair(int pair, int fg, int bg) { return init_pair((short)pair, (short)fg, (short)bg); }

int turf_key_up(void) { return KEY_UP; }
int turf_key_down(void) { return KEY_DOWN; }
int turf_key_left(void) { return KEY_LEFT; }
int turf_key_right(void) { return KEY_RIGHT; }
int turf_key_resize(void) { return KEY_RESIZE; }
int turf_key_home(void) { return KEY_HOME; }
int turf_key_end(void) { return KEY_END; }
int turf_key_enter(void) { return KEY_ENTER; }
int turf_key_backspace(void) { return KEY_BACKSPACE; }

#include <fcntl.h>

/* While curses owns the screen, stderr goes to a file: anything written there (a Swift runtime
   "Fatal error" message, a library's warning) would land on the game's screen and be wiped with
   it. The file is given back to the real stderr when the terminal is restored, normally or in a
   crash. It is a file without a name, made in `dir` (O_TMPFILE, or a fresh O_EXCL file unlinked
   at once): nothing already in the directory is opened, truncated or followed (a symlink, FIFO or
   device planted there once made turf truncate its target, hang, or copy a device to the
   terminal), and nothing is left behind. */
static int saved_stderr = -1;
static int capture_fd = -1;

static int open_unnamed(const char *dir) {
#ifdef O_TMPFILE
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return fd;
#endif
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/.stderr-XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof path) return -1;
    int tmp = mkostemp(path, O_CLOEXEC);
    if (tmp < 0) return -1;
    unlink(path);
    return tmp;
}

int turf_capture_stderr(const char *dir) {
    if (saved_stderr >= 0) return 0;
    int fd = open_unnamed(dir);
    if (fd < 0) return -1;
    int keep = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (keep < 0) { close(fd); return -1; }
    if (dup2(fd, STDERR_FILENO) < 0) { close(fd); close(keep); return -1; }
    capture_fd = fd;
    saved_stderr = keep;
    return 0;
}

/* Puts the real stderr back and copies what was captured to it (at most 64 KiB: it is turf's
   own output). Async-signal-safe (pread, write, dup2, close only), so the crash handler can
   call it too. Returns the bytes copied. */
long turf_release_stderr(void) {
    if (saved_stderr < 0) return 0;
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    saved_stderr = -1;
    long copied = 0;
    char buf[4096];
    while (copied < (64L << 10)) {
        ssize_t r = pread(capture_fd, buf, sizeof buf, (off_t)copied);
        if (r <= 0) break;
        ssize_t off = 0;
        while (off < r) {
            ssize_t w = write(STDERR_FILENO, buf + off, (size_t)(r - off));
            if (w <= 0) { off = r; break; }
            off += w;
        }
        copied += r;
    }
    close(capture_fd);
    capture_fd = -1;
    return copied;
}

void turf_emergency_restore(void) {
    static const char reset[] = "\033[0m\033[?25h\033[?1049l\r\n";
    if (saved_ok) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    ssize_t ignored = write(STDOUT_FILENO, reset, sizeof(reset) - 1);
    (void)ignored;
    turf_release_stderr();
}

#include <signal.h>
#include <poll.h>

static volatile sig_atomic_t quit_signal = 0;

static void on_quit(int sig) { quit_signal = sig; }

static void on_fatal(int sig) {
    turf_emergency_restore();
    signal(sig, SIG_DFL);
    raise(sig);
}

void turf_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_quit;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* Ctrl-\ (the terminal keeps ISIG in cbreak mode): by default it dumps core and leaves the
       terminal raw, so it quits cleanly like Ctrl-C instead. */
    sigaction(SIGQUIT, &sa, NULL);
    /* The crash handler runs on its own stack, so a stack overflow (SIGSEGV on a full stack) still
       gets the terminal restored. */
    static char alt_stack[64 * 1024];
    stack_t st;
    memset(&st, 0, sizeof st);
    st.ss_sp = alt_stack;
    st.ss_size = sizeof alt_stack;
    sigaltstack(&st, NULL);
    struct sigaction fa;
    memset(&fa, 0, sizeof fa);
    fa.sa_handler = on_fatal;
    sigemptyset(&fa.sa_mask);
    fa.sa_flags = SA_RESETHAND | SA_ONSTACK;
    int fatal[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP };
    for (unsigned i = 0; i < sizeof fatal / sizeof fatal[0]; i++) sigaction(fatal[i], &fa, NULL);
}

int turf_quit_signal(void) { return (int)quit_signal; }

int turf_wait_input(int timeout_ms) {
    struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN, .revents = 0 };
    return poll(&p, 1, timeout_ms);
}

/* A pseudo-terminal for `turf bench render`: curses draws into its slave side while a thread
   reads (and discards) what arrives on the master side, as a terminal emulator would. */
#include <pthread.h>
#include <sys/ioctl.h>

static int pty_master = -1;
static FILE *pty_out = NULL, *pty_in = NULL;
static pthread_t pty_reader;
static int pty_reader_running = 0;
static volatile long long pty_bytes = 0;
/* The first bytes written, kept for tests (read after turf_pty_curses_stop). */
static char pty_kept[1 << 20];
static size_t pty_kept_len = 0;

static void *pty_drain(void *arg) {
    (void)arg;
    char buf[65536];
    for (;;) {
        ssize_t r = read(pty_master, buf, sizeof buf);
        if (r <= 0) break;
        size_t room = sizeof pty_kept - pty_kept_len;
        size_t keep = (size_t)r < room ? (size_t)r : room;
        memcpy(pty_kept + pty_kept_len, buf, keep);
        pty_kept_len += keep;
        pty_bytes += r;
    }
    return NULL;
}

size_t turf_pty_kept(char *out, size_t capacity) {
    size_t n = pty_kept_len < capacity ? pty_kept_len : capacity;
    memcpy(out, pty_kept, n);
    return n;
}

int turf_pty_curses_start(int cols, int rows, const char *term_type) {
    if (started || pty_master >= 0) return -1;
    setlocale(LC_ALL, "");
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    if (grantpt(m) != 0 || unlockpt(m) != 0) { close(m); return -1; }
    const char *name = ptsname(m);
    if (name == NULL) { close(m); return -1; }
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) { close(m); return -1; }
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    ws.ws_col = (unsigned short)cols;
    ws.ws_row = (unsigned short)rows;
    ioctl(s, TIOCSWINSZ, &ws);
    pty_master = m;
    pty_bytes = 0;
    pty_kept_len = 0;
    if (pthread_create(&pty_reader, NULL, pty_drain, NULL) != 0) { close(s); close(m); pty_master = -1; return -1; }
    pty_reader_running = 1;
    pty_out = fdopen(s, "w");
    pty_in = fdopen(dup(s), "r");
    if (pty_out == NULL || pty_in == NULL) return -1;
    screen = newterm(term_type, pty_out, pty_in);
    if (screen == NULL) return -1;
    set_term(screen);
    started = 1;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    curs_set(0);
    return 0;
}

long long turf_pty_curses_stop(void) {
    turf_curses_stop();
    if (pty_out != NULL) { fclose(pty_out); pty_out = NULL; }
    if (pty_in != NULL) { fclose(pty_in); pty_in = NULL; }
    /* With the slave closed, the reader sees EOF (or EIO) and ends. */
    if (pty_reader_running) { pthread_join(pty_reader, NULL); pty_reader_running = 0; }
    if (pty_master >= 0) { close(pty_master); pty_master = -1; }
    return pty_bytes;
}

#include <pty.h>

int turf_spawn_on_pty(const char *path, char *const argv[], char *const envp[], int cols, int rows, int *master) {
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    ws.ws_col = (unsigned short)cols;
    ws.ws_row = (unsigned short)rows;
    int m = -1;
    pid_t pid = forkpty(&m, NULL, NULL, &ws);
    if (pid < 0) return -1;
    if (pid == 0) {
        execve(path, argv, envp);
        _exit(127);
    }
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    fcntl(m, F_SETFD, FD_CLOEXEC);
    *master = m;
    return (int)pid;
}
