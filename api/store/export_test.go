package store

// SetMigrateHook installs f as the migration fault-injection hook until
// the returned function is called (see migrateHook).
func SetMigrateHook(f func(step, path string) error) (restore func()) {
	old := migrateHook
	migrateHook = f
	return func() { migrateHook = old }
}
