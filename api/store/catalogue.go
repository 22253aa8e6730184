package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

var (
	regionTable = table{
		name: "regions", kind: "region", byName: true,
		cols: []string{"id", "revision", "created_at", "updated_at", "name", "description"},
		usedBy: []usage{
			{kind: "zone", table: "zones", where: "region_id = ?"},
			{kind: "host", table: "hosts", where: "region_id = ?"},
			{kind: "server", table: "servers", where: "region_id = ?"},
		},
	}
	zoneTable = table{
		name: "zones", kind: "zone", byName: true,
		cols:    []string{"id", "revision", "created_at", "updated_at", "name", "region_id", "description"},
		filters: map[string]string{"region": "region_id = ?"},
		usedBy: []usage{
			{kind: "host", table: "hosts", where: "zone_id = ?"},
			{kind: "server", table: "servers", where: "zone_id = ?"},
		},
	}
	aggregateTable = table{
		name: "aggregates", kind: "aggregate", byName: true,
		cols: []string{"id", "revision", "created_at", "updated_at", "name", "traits", "cpu_allocation_ratio",
			"ram_allocation_ratio", "reserved_memory_mib", "reserved_cpus", "weigher", "description"},
		usedBy: []usage{
			{kind: "host", table: "hosts", where: "id IN (SELECT host_id FROM host_aggregates WHERE aggregate_id = ?)"},
			{kind: "server", table: "servers", where: "aggregate_id = ?"},
		},
	}
	flavorTable = table{
		name: "flavors", kind: "flavor", byName: true,
		cols: []string{"id", "revision", "created_at", "updated_at", "name", "kind", "vcpus", "ram_mib", "disk_gib",
			"hugepages", "net_in_kbps", "net_out_kbps", "disk_iops", "disk_bytes_sec", "description"},
		filters: map[string]string{"kind": "kind = ?"},
		usedBy:  []usage{{kind: "server", table: "servers", where: "flavor_id = ?"}},
	}
	imageTable = table{
		name: "images", kind: "image", byName: true,
		cols: []string{"id", "revision", "created_at", "updated_at", "name", "disk_format", "status", "size_bytes",
			"sha256", "min_disk_gib", "description"},
		filters: map[string]string{"status": "status = ?"},
		usedBy:  []usage{{kind: "server", table: "servers", where: "image_id = ?"}},
	}
	projectTable = table{
		name: "projects", kind: "project", byName: true, owner: "id = ?",
		filters: map[string]string{"id": "id = ?"},
		cols:    []string{"id", "revision", "created_at", "updated_at", "name", "description"},
		usedBy: []usage{
			{kind: "server", table: "servers", where: "project_id = ?"},
			{kind: "group", table: "server_groups", where: "project_id = ?"},
			{kind: "token", table: "tokens", where: "project_id = ?"},
			{kind: "network", table: "networks", where: "project_id = ?"},
			{kind: "port", table: "ports", where: "project_id = ?"},
			{kind: "security group", table: "security_groups", where: "project_id = ?"},
		},
	}
)

// RegionRow is a stored region.
type RegionRow struct {
	rowMeta
	Name        string `db:"name"`
	Description string `db:"description"`
}

// API converts the row to its wire form.
func (r RegionRow) API() types.Region {
	return types.Region{Meta: r.toAPI(), Name: r.Name, Description: r.Description}
}

// CreateRegion stores a new region.
func (s *Store) CreateRegion(ctx context.Context, in types.RegionCreate) (types.Region, error) {
	row := RegionRow{rowMeta: newMeta(prefixRegion), Name: in.Name, Description: in.Description}
	return row.API(), insertRow(ctx, s, s.wr(ctx), regionTable, &row)
}

// GetRegion finds a region by ID or name.
func (s *Store) GetRegion(ctx context.Context, idOrName string) (types.Region, error) {
	row, err := getRow[RegionRow](ctx, s, s.rd(ctx), regionTable, idOrName)
	return row.API(), err
}

// ListRegions returns a page of regions.
func (s *Store) ListRegions(ctx context.Context, opts ListOptions) (types.List[types.Region], error) {
	return listAPI(ctx, s, regionTable, opts, RegionRow.API)
}

// UpdateRegion changes a region.
func (s *Store) UpdateRegion(ctx context.Context, idOrName string, ifMatch int64, in types.RegionUpdate) (types.Region, error) {
	row, err := updateRow(ctx, s, regionTable, idOrName, ifMatch, func(r *RegionRow) error {
		set(&r.Name, in.Name)
		set(&r.Description, in.Description)
		return nil
	})
	return row.API(), err
}

// DeleteRegion deletes a region that no zone, host or server uses.
func (s *Store) DeleteRegion(ctx context.Context, idOrName string, ifMatch int64) error {
	_, err := deleteRow[RegionRow](ctx, s, regionTable, idOrName, ifMatch)
	return err
}

// ZoneRow is a stored zone.
type ZoneRow struct {
	rowMeta
	Name        string `db:"name"`
	RegionID    string `db:"region_id"`
	Description string `db:"description"`
}

// API converts the row to its wire form.
func (r ZoneRow) API() types.Zone {
	return types.Zone{Meta: r.toAPI(), Name: r.Name, RegionID: r.RegionID, Description: r.Description}
}

// CreateZone stores a new zone in an existing region (by ID).
func (s *Store) CreateZone(ctx context.Context, regionID string, in types.ZoneCreate) (types.Zone, error) {
	row := ZoneRow{rowMeta: newMeta(prefixZone), Name: in.Name, RegionID: regionID, Description: in.Description}
	return row.API(), insertRow(ctx, s, s.wr(ctx), zoneTable, &row)
}

// GetZone finds a zone by ID or name; a name used in two regions is
// ErrAmbiguous.
func (s *Store) GetZone(ctx context.Context, idOrName string) (types.Zone, error) {
	row, err := getRow[ZoneRow](ctx, s, s.rd(ctx), zoneTable, idOrName)
	return row.API(), err
}

// GetZoneIn finds a zone of a region by ID or by name: rack names repeat
// across datacenters, so a name is looked up only within the region.
func (s *Store) GetZoneIn(ctx context.Context, regionID, idOrName string) (types.Zone, error) {
	z, err := s.GetZone(ctx, idOrName)
	if err == nil || !errors.Is(err, ErrAmbiguous) {
		return z, err
	}
	var row ZoneRow
	if err := s.rd(ctx).GetContext(ctx, &row, s.rb("SELECT * FROM zones WHERE region_id = ? AND name = ?"), regionID, idOrName); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return types.Zone{}, fmt.Errorf("zone %q in region %s: %w", idOrName, regionID, ErrNotFound)
		}
		return types.Zone{}, err
	}
	return row.API(), nil
}

// ListZones returns a page of zones. Filters: region (ID).
func (s *Store) ListZones(ctx context.Context, opts ListOptions) (types.List[types.Zone], error) {
	return listAPI(ctx, s, zoneTable, opts, ZoneRow.API)
}

// UpdateZone changes a zone.
func (s *Store) UpdateZone(ctx context.Context, idOrName string, ifMatch int64, in types.ZoneUpdate) (types.Zone, error) {
	row, err := updateRow(ctx, s, zoneTable, idOrName, ifMatch, func(r *ZoneRow) error {
		set(&r.Name, in.Name)
		set(&r.Description, in.Description)
		return nil
	})
	return row.API(), err
}

// DeleteZone deletes a zone that no host or server uses.
func (s *Store) DeleteZone(ctx context.Context, idOrName string, ifMatch int64) error {
	_, err := deleteRow[ZoneRow](ctx, s, zoneTable, idOrName, ifMatch)
	return err
}

// AggregateRow is a stored aggregate.
type AggregateRow struct {
	rowMeta
	Name               string  `db:"name"`
	Traits             string  `db:"traits"`
	CPUAllocationRatio float64 `db:"cpu_allocation_ratio"`
	RAMAllocationRatio float64 `db:"ram_allocation_ratio"`
	ReservedMemoryMiB  int64   `db:"reserved_memory_mib"`
	ReservedCPUs       int64   `db:"reserved_cpus"`
	Weigher            string  `db:"weigher"`
	Description        string  `db:"description"`
}

// API converts the row to its wire form.
func (r AggregateRow) API() types.Aggregate {
	return types.Aggregate{Meta: r.toAPI(), Name: r.Name, Traits: fromJSON[[]string](r.Traits),
		CPUAllocationRatio: r.CPUAllocationRatio, RAMAllocationRatio: r.RAMAllocationRatio,
		ReservedMemoryMiB: r.ReservedMemoryMiB, ReservedCPUs: r.ReservedCPUs, Weigher: r.Weigher, Description: r.Description}
}

// CreateAggregate stores a new aggregate; the caller has applied defaults.
func (s *Store) CreateAggregate(ctx context.Context, in types.Aggregate) (types.Aggregate, error) {
	row := AggregateRow{rowMeta: newMeta(prefixAggregate), Name: in.Name, Traits: toJSON(in.Traits),
		CPUAllocationRatio: in.CPUAllocationRatio, RAMAllocationRatio: in.RAMAllocationRatio,
		ReservedMemoryMiB: in.ReservedMemoryMiB, ReservedCPUs: in.ReservedCPUs, Weigher: in.Weigher, Description: in.Description}
	return row.API(), insertRow(ctx, s, s.wr(ctx), aggregateTable, &row)
}

// GetAggregate finds an aggregate by ID or name.
func (s *Store) GetAggregate(ctx context.Context, idOrName string) (types.Aggregate, error) {
	row, err := getRow[AggregateRow](ctx, s, s.rd(ctx), aggregateTable, idOrName)
	return row.API(), err
}

// ListAggregates returns a page of aggregates.
func (s *Store) ListAggregates(ctx context.Context, opts ListOptions) (types.List[types.Aggregate], error) {
	return listAPI(ctx, s, aggregateTable, opts, AggregateRow.API)
}

// UpdateAggregate changes an aggregate; check validates the result before
// it is written.
func (s *Store) UpdateAggregate(ctx context.Context, idOrName string, ifMatch int64, in types.AggregateUpdate, check func(types.Aggregate) error) (types.Aggregate, error) {
	row, err := updateRow(ctx, s, aggregateTable, idOrName, ifMatch, func(r *AggregateRow) error {
		set(&r.Name, in.Name)
		if in.Traits != nil {
			r.Traits = toJSON(*in.Traits)
		}
		set(&r.CPUAllocationRatio, in.CPUAllocationRatio)
		set(&r.RAMAllocationRatio, in.RAMAllocationRatio)
		set(&r.ReservedMemoryMiB, in.ReservedMemoryMiB)
		set(&r.ReservedCPUs, in.ReservedCPUs)
		set(&r.Weigher, in.Weigher)
		set(&r.Description, in.Description)
		return check(r.API())
	})
	return row.API(), err
}

// DeleteAggregate deletes an aggregate that no host or server uses.
func (s *Store) DeleteAggregate(ctx context.Context, idOrName string, ifMatch int64) error {
	_, err := deleteRow[AggregateRow](ctx, s, aggregateTable, idOrName, ifMatch)
	return err
}

// FlavorRow is a stored flavor.
type FlavorRow struct {
	rowMeta
	Name         string `db:"name"`
	Kind         string `db:"kind"`
	VCPUs        int64  `db:"vcpus"`
	RAMMiB       int64  `db:"ram_mib"`
	DiskGiB      int64  `db:"disk_gib"`
	Hugepages    int64  `db:"hugepages"`
	NetInKbps    int64  `db:"net_in_kbps"`
	NetOutKbps   int64  `db:"net_out_kbps"`
	DiskIOPS     int64  `db:"disk_iops"`
	DiskBytesSec int64  `db:"disk_bytes_sec"`
	Description  string `db:"description"`
}

// API converts the row to its wire form.
func (r FlavorRow) API() types.Flavor {
	return types.Flavor{Meta: r.toAPI(), Name: r.Name, Kind: r.Kind, VCPUs: r.VCPUs, RAMMiB: r.RAMMiB, DiskGiB: r.DiskGiB,
		Hugepages: r.Hugepages != 0, Description: r.Description,
		QoS: types.QoS{NetInKbps: r.NetInKbps, NetOutKbps: r.NetOutKbps, DiskIOPS: r.DiskIOPS, DiskBytesSec: r.DiskBytesSec}}
}

// CreateFlavor stores a new flavor; the caller has validated it.
func (s *Store) CreateFlavor(ctx context.Context, in types.FlavorCreate) (types.Flavor, error) {
	row := FlavorRow{rowMeta: newMeta(prefixFlavor), Name: in.Name, Kind: in.Kind, VCPUs: in.VCPUs, RAMMiB: in.RAMMiB,
		DiskGiB: in.DiskGiB, Hugepages: boolInt(in.Hugepages), NetInKbps: in.QoS.NetInKbps, NetOutKbps: in.QoS.NetOutKbps,
		DiskIOPS: in.QoS.DiskIOPS, DiskBytesSec: in.QoS.DiskBytesSec, Description: in.Description}
	return row.API(), insertRow(ctx, s, s.wr(ctx), flavorTable, &row)
}

// GetFlavor finds a flavor by ID or name.
func (s *Store) GetFlavor(ctx context.Context, idOrName string) (types.Flavor, error) {
	row, err := getRow[FlavorRow](ctx, s, s.rd(ctx), flavorTable, idOrName)
	return row.API(), err
}

// ListFlavors returns a page of flavors. Filters: kind.
func (s *Store) ListFlavors(ctx context.Context, opts ListOptions) (types.List[types.Flavor], error) {
	return listAPI(ctx, s, flavorTable, opts, FlavorRow.API)
}

// UpdateFlavor changes a flavor's name or description.
func (s *Store) UpdateFlavor(ctx context.Context, idOrName string, ifMatch int64, in types.FlavorUpdate) (types.Flavor, error) {
	row, err := updateRow(ctx, s, flavorTable, idOrName, ifMatch, func(r *FlavorRow) error {
		set(&r.Name, in.Name)
		set(&r.Description, in.Description)
		return nil
	})
	return row.API(), err
}

// DeleteFlavor deletes a flavor that no server uses.
func (s *Store) DeleteFlavor(ctx context.Context, idOrName string, ifMatch int64) error {
	_, err := deleteRow[FlavorRow](ctx, s, flavorTable, idOrName, ifMatch)
	return err
}

// ImageRow is a stored image record.
type ImageRow struct {
	rowMeta
	Name        string `db:"name"`
	DiskFormat  string `db:"disk_format"`
	Status      string `db:"status"`
	SizeBytes   int64  `db:"size_bytes"`
	SHA256      string `db:"sha256"`
	MinDiskGiB  int64  `db:"min_disk_gib"`
	Description string `db:"description"`
}

// API converts the row to its wire form.
func (r ImageRow) API() types.Image {
	return types.Image{Meta: r.toAPI(), Name: r.Name, DiskFormat: r.DiskFormat, Status: r.Status, SizeBytes: r.SizeBytes,
		SHA256: r.SHA256, MinDiskGiB: r.MinDiskGiB, Description: r.Description}
}

// CreateImage stores a new image record in status queued.
func (s *Store) CreateImage(ctx context.Context, in types.ImageCreate) (types.Image, error) {
	row := ImageRow{rowMeta: newMeta(prefixImage), Name: in.Name, DiskFormat: in.DiskFormat, Status: types.ImageQueued,
		MinDiskGiB: in.MinDiskGiB, Description: in.Description}
	return row.API(), insertRow(ctx, s, s.wr(ctx), imageTable, &row)
}

// GetImage finds an image by ID or name.
func (s *Store) GetImage(ctx context.Context, idOrName string) (types.Image, error) {
	row, err := getRow[ImageRow](ctx, s, s.rd(ctx), imageTable, idOrName)
	return row.API(), err
}

// ListImages returns a page of images. Filters: status.
func (s *Store) ListImages(ctx context.Context, opts ListOptions) (types.List[types.Image], error) {
	return listAPI(ctx, s, imageTable, opts, ImageRow.API)
}

// UpdateImage changes an image's name, minimum disk or description.
func (s *Store) UpdateImage(ctx context.Context, idOrName string, ifMatch int64, in types.ImageUpdate) (types.Image, error) {
	row, err := updateRow(ctx, s, imageTable, idOrName, ifMatch, func(r *ImageRow) error {
		set(&r.Name, in.Name)
		set(&r.MinDiskGiB, in.MinDiskGiB)
		set(&r.Description, in.Description)
		return nil
	})
	return row.API(), err
}

// BeginImageUpload moves a queued image to uploading, so that only one
// upload writes its data. An upload stuck for staleAfter (its corrald died)
// may be taken over. Anything else is ErrStale. The revision stays: an
// upload in progress is not a change that a client's If-Match should miss,
// and SetImageData bumps it when the data is in.
func (s *Store) BeginImageUpload(ctx context.Context, id string, staleAfter time.Duration) error {
	now := time.Now()
	res, err := s.wr(ctx).ExecContext(ctx, s.rb(`UPDATE images SET status = ?, updated_at = ?
		WHERE id = ? AND (status = ? OR (status = ? AND updated_at < ?))`),
		types.ImageUploading, micros(now), id, types.ImageQueued, types.ImageUploading, micros(now.Add(-staleAfter)))
	if err != nil {
		return fmt.Errorf("begin upload of image %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("image %s is not waiting for data: %w", id, ErrStale)
	}
	return nil
}

// AbortImageUpload returns an image whose upload failed to queued, with
// the updated_at it had before BeginImageUpload (queuedAt): a refused
// upload leaves the image as it was.
func (s *Store) AbortImageUpload(ctx context.Context, id string, queuedAt time.Time) error {
	_, err := s.wr(ctx).ExecContext(ctx, s.rb("UPDATE images SET status = ?, updated_at = ? WHERE id = ? AND status = ?"),
		types.ImageQueued, micros(queuedAt), id, types.ImageUploading)
	return err
}

// SetImageData records an upload: size, digest, and status active.
func (s *Store) SetImageData(ctx context.Context, id string, size int64, sha256 string) (types.Image, error) {
	row, err := updateRow(ctx, s, imageTable, id, 0, func(r *ImageRow) error {
		r.SizeBytes, r.SHA256, r.Status = size, sha256, types.ImageActive
		return nil
	})
	return row.API(), err
}

// DeleteImage deletes an image record that no server uses. The caller
// removes its data.
func (s *Store) DeleteImage(ctx context.Context, idOrName string, ifMatch int64) (types.Image, error) {
	row, err := deleteRow[ImageRow](ctx, s, imageTable, idOrName, ifMatch)
	return row.API(), err
}

// ProjectRow is a stored project.
type ProjectRow struct {
	rowMeta
	Name        string `db:"name"`
	Description string `db:"description"`
}

// API converts the row to its wire form.
func (r ProjectRow) API() types.Project {
	return types.Project{Meta: r.toAPI(), Name: r.Name, Description: r.Description}
}

// CreateProject stores a new project.
func (s *Store) CreateProject(ctx context.Context, in types.ProjectCreate) (types.Project, error) {
	row := ProjectRow{rowMeta: newMeta(prefixProject), Name: in.Name, Description: in.Description}
	return row.API(), insertRow(ctx, s, s.wr(ctx), projectTable, &row)
}

// GetProject finds a project by ID or name.
func (s *Store) GetProject(ctx context.Context, idOrName string) (types.Project, error) {
	row, err := getRow[ProjectRow](ctx, s, s.rd(ctx), projectTable, idOrName)
	return row.API(), err
}

// ListProjects returns a page of projects. Filters: id.
func (s *Store) ListProjects(ctx context.Context, opts ListOptions) (types.List[types.Project], error) {
	return listAPI(ctx, s, projectTable, opts, ProjectRow.API)
}

// UpdateProject changes a project.
func (s *Store) UpdateProject(ctx context.Context, idOrName string, ifMatch int64, in types.ProjectUpdate) (types.Project, error) {
	row, err := updateRow(ctx, s, projectTable, idOrName, ifMatch, func(r *ProjectRow) error {
		set(&r.Name, in.Name)
		set(&r.Description, in.Description)
		return nil
	})
	return row.API(), err
}

// DeleteProject deletes a project that has no servers, groups or tokens.
func (s *Store) DeleteProject(ctx context.Context, idOrName string, ifMatch int64) error {
	_, err := deleteRow[ProjectRow](ctx, s, projectTable, idOrName, ifMatch)
	return err
}

// listAPI lists rows and converts them.
func listAPI[R any, T any](ctx context.Context, s *Store, t table, opts ListOptions, conv func(R) T) (types.List[T], error) {
	p, err := listRows[R](ctx, s, t, opts)
	if err != nil {
		return types.List[T]{}, err
	}
	out := types.List[T]{Items: make([]T, len(p.Items)), NextCursor: p.Next}
	for i, r := range p.Items {
		out.Items[i] = conv(r)
	}
	return out, nil
}

// set copies *v into *dst when v is not nil.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain data is stored
	}
	return string(b)
}

// fromJSON decodes a stored JSON column; the store wrote it, so it is valid.
func fromJSON[T any](s string) T {
	var v T
	_ = json.Unmarshal([]byte(s), &v)
	return v
}
