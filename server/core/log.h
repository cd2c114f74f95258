/*
 * log.h - the one logger: timestamped lines on stderr.
 *
 * Modules below dicomweb/ log at debug only; they return errors and the
 * layer that turns an error into a response logs it once. Never log patient
 * names, IDs or birth dates; UIDs at debug only.
 */
#ifndef YY_LOG_H
#define YY_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Writes one raw line (the access log); no level filter but LOG_OFF. */
void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
