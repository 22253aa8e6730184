package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/placement"
	"github.com/labstack/echo/v4"
)

const maxGroupMembers = 1000

func (s *Server) groupRoutes(g *echo.Group) {
	g.POST("/groups", s.createGroup)
	g.GET("/groups", func(c echo.Context) error {
		if err := allow(c, readers...); err != nil {
			return err
		}
		opts, err := listOptions(c, map[string]func(string) (string, error){"project": s.projectID(c), "role": nil})
		if err != nil {
			return err
		}
		if scope := projectScope(c); scope != "" {
			opts.Filters["project"] = scope
		}
		l, err := s.store.ListGroups(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/groups/:id", func(c echo.Context) error {
		grp, err := s.visibleGroup(c)
		return found(c, grp.Revision, grp, err)
	})
	g.DELETE("/groups/:id", func(c echo.Context) error {
		if err := allow(c, serverWrite...); err != nil {
			return err
		}
		grp, err := s.visibleGroup(c)
		if err != nil {
			return err
		}
		gone, err := s.store.DeleteGroup(c.Request().Context(), grp.ID)
		if err != nil {
			return err
		}
		hosts := make([]string, len(gone))
		for i, m := range gone {
			hosts[i] = m.HostID
		}
		s.forget(c, hosts...)
		s.notify(c, hosts...)
		return c.NoContent(http.StatusNoContent)
	})
	g.POST("/groups/:id/scale", s.scaleGroup)
	g.POST("/groups/:id/members/:server/replace", s.replaceMember)
}

// visibleGroup loads the group in the path (ID, or name within the
// caller's project); another project's is a 404.
func (s *Server) visibleGroup(c echo.Context) (types.Group, error) {
	return visible(c, s.store.GetGroup)
}

// groupPlan is a validated group: the engine's request and the server
// template its members are made from.
type groupPlan struct {
	req      placement.GroupRequest
	template types.Server
}

// planGroup validates a group spec and resolves its references.
func (s *Server) planGroup(ctx context.Context, c echo.Context, name, role, project, region string, spec *types.GroupSpec) (groupPlan, error) {
	var gp groupPlan
	if err := first(checkName("name", name, maxNameLen-5),
		checkOneOf("role", role, types.GroupBroker, types.GroupStream, types.GroupWorkers),
		checkRange("members", int64(spec.Members), 1, maxGroupMembers), checkTraits(spec.Traits),
		checkRange("min_zones", int64(spec.MinZones), 0, 1000), checkRange("replication_factor", int64(spec.ReplicationFactor), 0, 100)); err != nil {
		return gp, err
	}
	if spec.Weigher != "" {
		if err := checkOneOf("weigher", spec.Weigher, "pack", "spread"); err != nil {
			return gp, err
		}
	}
	if spec.Image == "" {
		return gp, types.FieldError("image", "is required")
	}
	// The template goes through the same checks as a single server.
	probe := types.ServerCreate{Name: name + "-1", Kind: types.KindVM, Project: project, Flavor: spec.Flavor, Image: spec.Image,
		Region: region, Aggregate: spec.Aggregate}
	if role == types.GroupStream {
		z := spec.Stream
		if z == nil {
			return gp, types.FieldError("stream", "is required for stream groups")
		}
		if err := first(checkRange("stream.slots_per_worker", z.SlotsPerWorker, 1, 1024),
			checkRange("stream.disk_gib", z.DiskGiB, 0, maxDiskGiB),
			checkRange("stream.memory_mib_per_slot", z.MemoryMiBPerSlot, 1, maxRAMMiB)); err != nil {
			return gp, err
		}
		if !(z.CPUPerSlot > 0 && z.CPUPerSlot <= 64) {
			return gp, types.FieldError("stream.cpu_per_slot", "is %g, must be above 0 and at most 64", z.CPUPerSlot)
		}
		f, err := s.streamFlavor(ctx, *z)
		if err != nil {
			return gp, err
		}
		probe.Flavor, spec.Flavor = f.ID, f.ID
	}
	tmpl, flavor, err := s.resolveServer(c, probe)
	if err != nil {
		return gp, err
	}
	spec.Flavor, spec.Image, spec.Aggregate = tmpl.FlavorID, tmpl.ImageID, tmpl.AggregateID
	zones := make([]string, 0, len(spec.Zones))
	for _, z := range spec.Zones {
		zone, err := s.store.GetZoneIn(ctx, tmpl.RegionID, z)
		if err != nil {
			return gp, refError("zones", err)
		}
		if tmpl.RegionID != "" && zone.RegionID != tmpl.RegionID {
			return gp, types.FieldError("zones", "zone %s is not in region %s", zone.Name, region)
		}
		zones = append(zones, zone.ID)
	}
	spec.Zones = zones
	base := s.placementRequest(tmpl, flavor, spec.Traits, spec.Weigher)
	gp.req = placement.GroupRequest{Constraints: base.Constraints, Role: placement.GroupRole(role), Members: spec.Members,
		Flavor: base.Flavor, SpreadZones: spec.SpreadZones, MinZones: spec.MinZones, ReplicationFactor: spec.ReplicationFactor,
		DistinctHosts: spec.DistinctHosts, Now: s.now()}
	gp.req.Zones = zones
	if role == types.GroupStream {
		z := spec.Stream
		gp.req.Stream = &placement.StreamSizing{SlotsPerWorker: z.SlotsPerWorker, CPUPerSlotMilli: int64(math.Round(z.CPUPerSlot * 1000)),
			MemoryPerSlotMiB: z.MemoryMiBPerSlot, DiskGiB: flavor.DiskGiB}
	}
	gp.template = tmpl
	return gp, nil
}

// streamFlavor finds or makes the flavor of a stream worker: slots × (CPU,
// memory) per slot, at least one whole core per slot.
func (s *Server) streamFlavor(ctx context.Context, z types.StreamSizing) (types.Flavor, error) {
	f := (&placement.StreamSizing{SlotsPerWorker: z.SlotsPerWorker, CPUPerSlotMilli: int64(math.Round(z.CPUPerSlot * 1000)),
		MemoryPerSlotMiB: z.MemoryMiBPerSlot}).Flavor()
	disk := z.DiskGiB
	if disk == 0 {
		disk = 10
	}
	name := fmt.Sprintf("stream.%ds.%dc.%dm.%dg", z.SlotsPerWorker, f.VCPUs, f.MemoryMiB, disk)
	if fl, err := s.store.GetFlavor(ctx, name); err == nil {
		return fl, nil
	}
	fl, err := s.store.CreateFlavor(ctx, types.FlavorCreate{Name: name, Kind: types.KindVM, VCPUs: f.VCPUs, RAMMiB: f.MemoryMiB,
		DiskGiB: disk, Description: "stream worker sized by slots (made by corrald)"})
	if errors.Is(err, store.ErrExists) {
		return s.store.GetFlavor(ctx, name)
	}
	return fl, err
}

// members turns a decision's claims into servers named name-N.
func members(tmpl types.Server, name string, d placement.Decision, next int) []store.PlacedServer {
	out := make([]store.PlacedServer, len(d.Claims))
	for i, cl := range d.Claims {
		srv := tmpl
		srv.Name = fmt.Sprintf("%s-%d", name, next+i)
		srv.HostID, srv.RegionID, srv.ZoneID = cl.HostID, cl.Region, cl.Zone
		out[i] = store.PlacedServer{Server: srv, Claim: allocation(cl.Resources)}
	}
	return out
}

// createGroup places every member at once, all or nothing: 201 with each
// member's host and zone (set broker.rack from zone_id), or 409 with the
// explanation and nothing claimed.
func (s *Server) createGroup(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	var in types.GroupCreate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	gp, err := s.planGroup(ctx, c, in.Name, in.Role, in.Project, in.Region, &in.GroupSpec)
	if err != nil {
		return err
	}
	grp := &types.Group{Meta: types.Meta{ID: store.NewGroupID()}, Name: in.Name, ProjectID: gp.template.ProjectID,
		Role: in.Role, Spec: in.GroupSpec}
	_, err = s.placer.decide(ctx, func(snap *placement.Snapshot) (placement.Decision, error) {
		return snap.PlaceGroup(gp.req)
	}, func(d placement.Decision) error {
		grp.Revision = 0
		grp.RegionID = d.Region
		made, err := s.store.ClaimAndCreate(ctx, s.placer.hostClaims(d), members(gp.template, in.Name, d, 1), grp)
		s.notifyServers(c, made...)
		return err
	})
	if err != nil {
		return noValidHost(err)
	}
	out, err := s.store.GetGroup(ctx, grp.ID)
	return created(c, out.ID, out.Revision, out, err)
}

func existing(grp types.Group) []placement.Member {
	out := make([]placement.Member, len(grp.Members))
	for i, m := range grp.Members {
		out[i] = placement.Member{ID: m.ServerID, HostID: m.HostID, Region: grp.RegionID, Zone: m.ZoneID}
	}
	return out
}

// nextIndex is one more than the highest member number in use.
func nextIndex(grp types.Group) int {
	n := 0
	for _, m := range grp.Members {
		if i, err := strconv.Atoi(strings.TrimPrefix(m.Name, grp.Name+"-")); err == nil && i > n {
			n = i
		}
	}
	return n + 1
}

// scaleGroup grows a group (new members keep the spread) or shrinks it
// (members leave the most crowded rack first).
func (s *Server) scaleGroup(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	// Hold the group until this request commits, so that a concurrent
	// scale-up or replace decides on the members this one leaves (and the
	// group's revision is checked again in the claim).
	if err := s.store.LockGroup(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	grp, err := s.visibleGroup(c)
	if err != nil {
		return err
	}
	var in types.GroupScale
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := checkRange("members", int64(in.Members), 1, maxGroupMembers); err != nil {
		return err
	}
	ctx := c.Request().Context()
	spec := grp.Spec
	project := grp.ProjectID
	gp, err := s.planGroup(ctx, c, grp.Name, grp.Role, project, grp.RegionID, &spec)
	if err != nil {
		return err
	}
	gp.req.Region = grp.RegionID
	gp.req.Existing = existing(grp)
	cur := len(grp.Members)
	switch {
	case in.Members > cur:
		_, err = s.placer.decide(ctx, func(snap *placement.Snapshot) (placement.Decision, error) {
			return snap.ScaleUp(gp.req, in.Members-cur)
		}, func(d placement.Decision) error {
			made, err := s.store.ClaimAndCreate(ctx, s.placer.hostClaims(d), members(gp.template, grp.Name, d, nextIndex(grp)), &grp)
			s.notifyServers(c, made...)
			return err
		})
		if err != nil {
			return noValidHost(err)
		}
	case in.Members < cur:
		gone, err := placement.ScaleDown(gp.req, cur-in.Members)
		if err != nil {
			return noValidHost(err)
		}
		ids := make([]string, len(gone))
		hosts := make([]string, len(gone))
		for i, m := range gone {
			ids[i], hosts[i] = m.ID, m.HostID
		}
		if _, err := s.store.DeleteServers(ctx, ids, 0); err != nil {
			return err
		}
		s.forget(c, hosts...)
		s.notify(c, hosts...)
	}
	spec.Members = in.Members
	if err := s.store.SetGroupSpec(ctx, grp.ID, spec); err != nil {
		return err
	}
	out, err := s.store.GetGroup(ctx, grp.ID)
	return found(c, out.Revision, out, err)
}

// replaceMember puts a new member in the same rack as the one it replaces
// (a broker's rack is fixed for life) and removes the old one, in one
// transaction.
func (s *Server) replaceMember(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	// Hold the group until this request commits, so that a concurrent
	// scale-up or replace decides on the members this one leaves (and the
	// group's revision is checked again in the claim).
	if err := s.store.LockGroup(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	grp, err := s.visibleGroup(c)
	if err != nil {
		return err
	}
	var old placement.Member
	var oldName string
	for _, m := range grp.Members {
		if m.ServerID == c.Param("server") || m.Name == c.Param("server") {
			old = placement.Member{ID: m.ServerID, HostID: m.HostID, Region: grp.RegionID, Zone: m.ZoneID}
			oldName = m.Name
		}
	}
	if old.ID == "" {
		return notFound("member", c.Param("server"))
	}
	ctx := c.Request().Context()
	spec := grp.Spec
	gp, err := s.planGroup(ctx, c, grp.Name, grp.Role, grp.ProjectID, grp.RegionID, &spec)
	if err != nil {
		return err
	}
	gp.req.Region = grp.RegionID
	gp.req.Existing = existing(grp)
	var repl types.Server
	_, err = s.placer.decide(ctx, func(snap *placement.Snapshot) (placement.Decision, error) {
		return snap.Replace(gp.req, old)
	}, func(d placement.Decision) error {
		ps := members(gp.template, grp.Name, d, 0)[0]
		ps.Server.Name = oldName
		var err error
		repl, err = s.store.ReplaceServer(ctx, old.ID, s.placer.hostClaims(d), ps)
		return err
	})
	if err != nil {
		return noValidHost(err)
	}
	// The release of the old member moved its host on: rebuild from the store.
	s.forget(c, old.HostID, repl.HostID)
	s.notify(c, old.HostID, repl.HostID)
	setResource(c, repl.ID)
	return object(c, http.StatusCreated, repl.Revision, repl)
}
