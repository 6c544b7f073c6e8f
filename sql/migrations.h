#ifndef HATO_SQL_MIGRATIONS_H
#define HATO_SQL_MIGRATIONS_H
/* The schema migrations compiled in from sql/migrations/NNN_name.sql. */
struct migration {
	int version;
	const char *name;
	const char *sql;	/* statements separated by ";\n" */
};
extern const struct migration migrations[];
extern const int migrations_count;
#endif
