package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// Usage history for right-sizing: each report of a running guest adds one
// sample to the server's bucket of the hour (CPU use since the previous
// report, memory in use now). Only hourly sums and peaks are kept, so a
// server costs at most UsageKeepHours rows whatever the report rate.

// UsageKeepHours bounds each server's history: 8 days of hourly buckets.
const UsageKeepHours = 8 * 24

// minCPUInterval is the shortest interval a CPU sample spans: shorter
// ones are too noisy, and the next report spans longer instead.
const minCPUInterval = 10 * time.Second

// UsageHour is one server's usage in one hour.
type UsageHour struct {
	ServerID string `db:"server_id"`
	// Hour is unix seconds / 3600.
	Hour int64 `db:"hour"`
	// Samples CPU samples: their sum and peak in hundredths of a percent
	// of the flavor's vCPUs.
	Samples int64 `db:"samples"`
	CPUSum  int64 `db:"cpu_sum"`
	CPUMax  int64 `db:"cpu_max"`
	// MemSamples memory samples: their sum and peak in KiB used.
	MemSamples int64 `db:"mem_samples"`
	MemSum     int64 `db:"mem_sum"`
	MemMax     int64 `db:"mem_max"`
}

// recordUsage adds a running guest's counters to its usage history.
func (s *Store) recordUsage(ctx context.Context, tx *Tx, row ServerRow, c types.GuestCounter, now time.Time) error {
	var vcpus int64
	if err := tx.GetContext(ctx, &vcpus, s.rb("SELECT vcpus FROM flavors WHERE id = ?"), row.FlavorID); err != nil || vcpus <= 0 {
		return nil // a flavor gone or without vCPUs: no sample
	}
	var last struct {
		CPU int64 `db:"cpu_time_ns"`
		At  int64 `db:"at"`
	}
	err := tx.GetContext(ctx, &last, s.rb("SELECT cpu_time_ns, at FROM server_usage_last WHERE server_id = ?"), row.ID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read usage of %s: %w", row.ID, err)
	}
	hadLast := err == nil
	cpu := int64(c.CPUTimeNs)
	sample, cpuBP, moveLast := false, int64(0), true
	if hadLast {
		dt := now.Sub(fromMicros(last.At))
		switch d := cpu - last.CPU; {
		case d < 0 || dt <= 0:
			// The guest restarted (its counter began again) or the
			// clock went back: start over from this report.
		case dt < minCPUInterval:
			moveLast = false
		default:
			sample = true
			cpuBP = int64(float64(d) / (float64(dt.Nanoseconds()) * float64(vcpus)) * 10000)
			cpuBP = max(0, min(cpuBP, 10000))
		}
	}
	if moveLast {
		if hadLast {
			_, err = tx.ExecContext(ctx, s.rb("UPDATE server_usage_last SET cpu_time_ns = ?, at = ? WHERE server_id = ?"), cpu, micros(now), row.ID)
		} else {
			_, err = tx.ExecContext(ctx, s.rb("INSERT INTO server_usage_last (server_id, cpu_time_ns, at) VALUES (?, ?, ?)"), row.ID, cpu, micros(now))
		}
		if err != nil {
			return fmt.Errorf("record usage of %s: %w", row.ID, err)
		}
	}
	h := UsageHour{ServerID: row.ID, Hour: now.Unix() / 3600}
	if sample {
		h.Samples, h.CPUSum, h.CPUMax = 1, cpuBP, cpuBP
	}
	if c.MemoryUsedKiB > 0 {
		m := int64(c.MemoryUsedKiB)
		h.MemSamples, h.MemSum, h.MemMax = 1, m, m
	}
	if h.Samples == 0 && h.MemSamples == 0 {
		return nil
	}
	_, err = tx.ExecContext(ctx, s.rb(`INSERT INTO server_usage (server_id, hour, samples, cpu_sum, cpu_max, mem_samples, mem_sum, mem_max)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (server_id, hour) DO UPDATE SET samples = server_usage.samples + excluded.samples,
			cpu_sum = server_usage.cpu_sum + excluded.cpu_sum,
			cpu_max = CASE WHEN excluded.cpu_max > server_usage.cpu_max THEN excluded.cpu_max ELSE server_usage.cpu_max END,
			mem_samples = server_usage.mem_samples + excluded.mem_samples,
			mem_sum = server_usage.mem_sum + excluded.mem_sum,
			mem_max = CASE WHEN excluded.mem_max > server_usage.mem_max THEN excluded.mem_max ELSE server_usage.mem_max END`),
		h.ServerID, h.Hour, h.Samples, h.CPUSum, h.CPUMax, h.MemSamples, h.MemSum, h.MemMax)
	if err != nil {
		return fmt.Errorf("record usage of %s: %w", row.ID, err)
	}
	return nil
}

// UsageServer is a VM with its flavor, as right-sizing judges it.
type UsageServer struct {
	ID        string `db:"id"`
	Name      string `db:"name"`
	ProjectID string `db:"project_id"`
	HostID    string `db:"host_id"`
	ZoneID    string `db:"zone_id"`
	FlavorID  string `db:"flavor_id"`
	Flavor    string `db:"flavor_name"`
	VCPUs     int64  `db:"vcpus"`
	RAMMiB    int64  `db:"ram_mib"`
	DiskGiB   int64  `db:"disk_gib"`
	Hugepages bool   `db:"hugepages"`
}

// UsageFlavor is a VM flavor a server could be resized to.
type UsageFlavor struct {
	ID        string `db:"id"`
	Name      string `db:"name"`
	VCPUs     int64  `db:"vcpus"`
	RAMMiB    int64  `db:"ram_mib"`
	DiskGiB   int64  `db:"disk_gib"`
	Hugepages bool   `db:"hugepages"`
}

// UsageData is what a right-sizing report is made from.
type UsageData struct {
	// Servers are the VMs the caller may see (ctx's project), placed and
	// not being deleted.
	Servers []UsageServer
	// Hours are their buckets since the window's start, by server.
	Hours   map[string][]UsageHour
	Flavors []UsageFlavor
	// Zones maps zone IDs to names.
	Zones map[string]string
}

// Usage returns the VMs ctx may see, their usage since sinceHour (unix
// seconds / 3600), the VM flavors and the zones' names.
func (s *Store) Usage(ctx context.Context, sinceHour int64) (UsageData, error) {
	out := UsageData{Hours: map[string][]UsageHour{}, Zones: map[string]string{}}
	where, args := "", []any{types.KindVM, types.ServerDeleting}
	if p := ProjectOf(ctx); p != "" {
		where, args = " AND s.project_id = ?", append(args, p)
	}
	var servers []struct {
		UsageServer
		HP int64 `db:"hp"`
	}
	if err := s.rd(ctx).SelectContext(ctx, &servers, s.rb(`SELECT s.id, s.name, s.project_id, s.host_id, s.zone_id, s.flavor_id,
		f.name AS flavor_name, f.vcpus, f.ram_mib, f.disk_gib, f.hugepages AS hp
		FROM servers s JOIN flavors f ON f.id = s.flavor_id
		WHERE s.kind = ? AND s.state <> ? AND s.host_id <> ''`+where+` ORDER BY s.name, s.id`), args...); err != nil {
		return out, fmt.Errorf("list servers for usage: %w", err)
	}
	for _, r := range servers {
		r.UsageServer.Hugepages = r.HP != 0
		out.Servers = append(out.Servers, r.UsageServer)
	}
	hwhere, hargs := "", []any{sinceHour}
	if p := ProjectOf(ctx); p != "" {
		hwhere, hargs = " AND server_id IN (SELECT id FROM servers WHERE project_id = ?)", append(hargs, p)
	}
	var hours []UsageHour
	if err := s.rd(ctx).SelectContext(ctx, &hours, s.rb(`SELECT server_id, hour, samples, cpu_sum, cpu_max, mem_samples, mem_sum, mem_max
		FROM server_usage WHERE hour >= ?`+hwhere+` ORDER BY server_id, hour`), hargs...); err != nil {
		return out, fmt.Errorf("read usage: %w", err)
	}
	for _, h := range hours {
		out.Hours[h.ServerID] = append(out.Hours[h.ServerID], h)
	}
	var flavors []struct {
		UsageFlavor
		HP int64 `db:"hp"`
	}
	if err := s.rd(ctx).SelectContext(ctx, &flavors, s.rb(`SELECT id, name, vcpus, ram_mib, disk_gib, hugepages AS hp
		FROM flavors WHERE kind = ? ORDER BY ram_mib, vcpus, name`), types.KindVM); err != nil {
		return out, fmt.Errorf("list flavors for usage: %w", err)
	}
	for _, f := range flavors {
		f.UsageFlavor.Hugepages = f.HP != 0
		out.Flavors = append(out.Flavors, f.UsageFlavor)
	}
	var zones []struct {
		ID   string `db:"id"`
		Name string `db:"name"`
	}
	if err := s.rd(ctx).SelectContext(ctx, &zones, "SELECT id, name FROM zones"); err != nil {
		return out, fmt.Errorf("list zones for usage: %w", err)
	}
	for _, z := range zones {
		out.Zones[z.ID] = z.Name
	}
	return out, nil
}

// PurgeUsage removes usage older than before's hour, and the history of
// servers that no longer exist.
func (s *Store) PurgeUsage(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.wr(ctx).ExecContext(ctx, s.rb("DELETE FROM server_usage WHERE hour < ? OR server_id NOT IN (SELECT id FROM servers)"),
		before.Unix()/3600)
	if err != nil {
		return 0, fmt.Errorf("purge usage: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := s.wr(ctx).ExecContext(ctx, "DELETE FROM server_usage_last WHERE server_id NOT IN (SELECT id FROM servers)"); err != nil {
		return n, fmt.Errorf("purge usage: %w", err)
	}
	return n, nil
}
