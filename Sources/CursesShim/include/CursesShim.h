#ifndef TURF_CURSES_SHIM_H
#define TURF_CURSES_SHIM_H
#include <stddef.h>
#include <wchar.h>
/* Curses macros and globals that do not import into Swift (or that Swift 6 rejects as shared
   mutable state), exported as plain functions. */
int turf_attr_bold(void);
int turf_attr_reverse(void);
int turf_attr_dim(void);
int turf_color_pair(int n);
int turf_key_f(int n);
int turf_lines(void);
int turf_cols(void);
int turf_colors(void);
/* Whether curses can run on $TERM: 0 yes; 1 TERM unset or empty; 2 no terminfo entry for TERM;
   3 no terminfo database; 4 the terminal cannot move its cursor (dumb, hardcopy). Prints nothing. */
int turf_check_terminal(void);
/* Starts curses on the terminal (newterm): locale, cbreak, no echo, keypad, non-blocking input, no
   cursor. Returns 0 on success, else turf_check_terminal's code (2 if newterm itself failed). */
int turf_curses_start(void);
void turf_curses_stop(void);
int turf_curses_is_started(void);
/* Draws a wide string at (y, x) with attributes and colour pair. */
void turf_draw(int y, int x, const wchar_t *s, int attrs, int pair);
/* Reads one key without blocking: returns 0 = none, 1 = character in *ch, 2 = key code in *ch. */
int turf_read_key(unsigned int *ch);
void turf_refresh(void);
void turf_clear(void);
int turf_init_pair(int pair, int fg, int bg);
/* Key codes. */
int turf_key_up(void);
int turf_key_down(void);
int turf_key_left(void);
int turf_key_right(void);
int turf_key_resize(void);
int turf_key_home(void);
int turf_key_end(void);
int turf_key_enter(void);
int turf_key_backspace(void);
/* Async-signal-safe terminal restore for fatal signals: saved termios back, leave the alternate
   screen, show the cursor, reset attributes. */
void turf_save_termios(void);
void turf_emergency_restore(void);
/* Sends stderr to an unnamed file in `dir` until turf_release_stderr copies it back. */
int turf_capture_stderr(const char *dir);
long turf_release_stderr(void);
#endif
#ifndef TURF_SIGNALS_DECLARED
#define TURF_SIGNALS_DECLARED
/* SIGINT/SIGTERM/SIGHUP/SIGQUIT set a flag the main loop polls (so it can save the replay and restore the
   terminal normally); fatal signals (a crash) restore the terminal, then die with the same signal. */
void turf_install_signal_handlers(void);
int turf_quit_signal(void);
/* Waits up to timeout_ms for input on stdin; returns >0 if input is ready. */
int turf_wait_input(int timeout_ms);
#endif
#ifndef TURF_PTY_DECLARED
#define TURF_PTY_DECLARED
/* For benchmarks: starts curses on a new pseudo-terminal of cols x rows with terminal type
   term_type, while a thread reads and discards its output. 0 on success, -1 on failure. */
int turf_pty_curses_start(int cols, int rows, const char *term_type);
/* Leaves curses, closes the pseudo-terminal; returns the bytes curses wrote to it. */
long long turf_pty_curses_stop(void);
/* Copies up to capacity of the first (at most 1 MiB) bytes curses wrote to the last
   pseudo-terminal; call after turf_pty_curses_stop. Returns the bytes copied. */
size_t turf_pty_kept(char *out, size_t capacity);
#endif
#ifndef TURF_SPAWN_DECLARED
#define TURF_SPAWN_DECLARED
/* Starts `path` with `argv` and `envp` (NULL-terminated) as the session leader of a new
   pseudo-terminal of `cols`x`rows` (its stdin, stdout, stderr and controlling terminal), for
   `turf bench input`. Only async-signal-safe calls run between fork and exec. Returns the child's
   pid and the master side (nonblocking, close-on-exec) in *master; -1 on failure. */
int turf_spawn_on_pty(const char *path, char *const argv[], char *const envp[], int cols, int rows, int *master);
#endif
