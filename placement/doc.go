// Package placement decides which host runs a server, a bare-metal
// instance or every member of a worker group, and explains every refusal.
//
// It is pure logic on its own types: it imports only the standard library,
// does no I/O and never reads the clock (the current time comes in the
// request). The store owns the truth and the atomic claim; this package
// only proposes.
//
// # Pipeline
//
// A Snapshot indexes the hosts once (regions, zones, aggregates and traits
// become small integers and bit masks; allocation ratios and capacities are
// precomputed). Place then runs one linear scan:
//
//   - filter: every host goes through the filters in a fixed order and is
//     either kept or counted under the first Reason that rejects it
//     (never match, then unavailable, then policy, then full now);
//   - weigh: kept hosts get an integer score (pack, spread, or best fit for
//     bare metal);
//   - select: the best score wins, ties to the smallest host ID;
//   - claim: the Decision lists the host, the Resources to add and the
//     Generation seen; the store compares and swaps that generation. After a
//     lost race the caller refreshes the host (Snapshot.Update) and places
//     again.
//
// Nothing is allocated per host, so a decision over 10,000 hosts takes a
// fraction of a millisecond. Strings are formatted once, at the end, into an
// Explanation that is plain JSON (a 409's details, or a dry-run response).
//
// # Capacity
//
// Allocation ratios are enforced in one function, fit: used + need must stay
// within (total - reserved) × ratio, with the ratio in integer thousandths so
// that 1.0 is exact. A host in several aggregates takes the smallest ratio.
// Hugepage memory is never overcommitted; dedicated-CPU guests (stream
// workers) see a CPU ratio of 1.0. Every guest is charged its hypervisor
// Overhead as normal memory. On top of the allocations the failsafe refuses a
// compute host whose measured free memory (from its last heartbeat, minus
// claims since) would fall below a margin, and a host whose heartbeat is
// stale is not a candidate.
//
// # Groups
//
// PlaceGroup places N members all or nothing within one region, optionally
// spread evenly over zones (skew at most one) on distinct hosts; ScaleUp,
// ScaleDown and Replace keep that spread, and a member never changes zone.
// See README.md for the diagrams and the arithmetic.
//
// # Concurrency
//
// Place, PlaceGroup, ScaleUp and Replace only read the Snapshot and can run
// in parallel. Apply and Update write it and need exclusive access.
package placement
