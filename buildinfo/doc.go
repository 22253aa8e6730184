// Package buildinfo describes the running binary for the `version`
// commands of corrald, corral-agent and corralctl: its module version, the
// VCS revision and commit time it was built from, and the Go version, as
// runtime/debug.ReadBuildInfo reports them. Standard library only.
package buildinfo
