#ifndef HATO_CTL_SENDLOG_H
#define HATO_CTL_SENDLOG_H
/* hatoctl log and hatoctl trace (see sendlog.c). */
struct store;
int cmd_log(struct store *st, int argc, char **argv);
int cmd_trace(struct store *st, int argc, char **argv);
#endif
