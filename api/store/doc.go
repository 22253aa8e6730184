// Package store keeps Corral's state in SQL through sqlx: embedded SQLite by
// default, PostgreSQL when several corrald replicas share one database.
//
// One set of versioned migrations (migrations/*.sql, embedded) runs on both.
// Before migrating an existing SQLite database the store writes a backup copy
// next to it with VACUUM INTO, and it refuses to open a database whose schema
// is newer than the binary knows. Rows are converted to and from api/types;
// errors are the sentinels of errors.go, never driver errors matched on text.
package store
