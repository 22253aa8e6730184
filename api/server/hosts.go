package server

import (
	"errors"
	"math"
	"net/http"
	"strings"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

func (s *Server) hostRoutes(g *echo.Group) {
	g.POST("/hosts/register", s.registerHost)
	g.POST("/hosts/:id/heartbeat", s.heartbeat)
	g.GET("/hosts", func(c echo.Context) error {
		if err := allowInfra(c); err != nil {
			return err
		}
		opts, err := listOptions(c, map[string]func(string) (string, error){
			"region": s.regionID(c), "zone": s.zoneID(c), "aggregate": s.aggregateID(c), "state": nil,
		})
		if err != nil {
			return err
		}
		l, err := s.store.ListHosts(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/hosts/:id", func(c echo.Context) error {
		if err := allowInfra(c, types.RoleAgent); err != nil {
			return err
		}
		h, err := s.store.GetHost(c.Request().Context(), c.Param("id"))
		if err == nil {
			if p := principalOf(c); p.Role == types.RoleAgent && p.HostID != h.ID {
				return notFound("host", c.Param("id"))
			}
		}
		return found(c, h.Revision, h, err)
	})
	g.PATCH("/hosts/:id", func(c echo.Context) error {
		var in types.HostUpdate
		rev, err := s.prepareUpdate(c, &in)
		if err != nil {
			return err
		}
		if in.State != nil {
			if err := checkOneOf("state", *in.State, types.HostUp, types.HostMaintenance); err != nil {
				return err
			}
		}
		var aggs *[]string
		if in.Aggregates != nil {
			ids, err := s.resolveAggregates(c, *in.Aggregates)
			if err != nil {
				return err
			}
			aggs = &ids
		}
		h, err := s.store.UpdateHost(c.Request().Context(), c.Param("id"), rev, in.State, aggs)
		return found(c, h.Revision, h, err)
	})
	g.DELETE("/hosts/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		return s.store.DeleteHost(c.Request().Context(), id, rev)
	}))
}

func (s *Server) resolveAggregates(c echo.Context, names []string) ([]string, error) {
	ids := make([]string, 0, len(names))
	seen := map[string]bool{}
	for _, n := range names {
		a, err := s.store.GetAggregate(c.Request().Context(), n)
		if err != nil {
			return nil, refError("aggregates", err)
		}
		if !seen[a.ID] {
			ids = append(ids, a.ID)
			seen[a.ID] = true
		}
	}
	return ids, nil
}

// registerHost creates or refreshes a host from its agent and returns a new
// host-scoped agent token.
func (s *Server) registerHost(c echo.Context) error {
	if err := allow(c, types.RoleAdmin, types.RoleRegistrar); err != nil {
		return err
	}
	var in types.HostRegister
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := first(checkName("name", in.Name, maxHostNameLen),
		checkRange("inventory.cpus", in.Inventory.CPUs, 1, maxVCPUs),
		checkRange("inventory.ram_mib", in.Inventory.RAMMiB, 1, maxRAMMiB),
		checkRange("inventory.disk_gib", in.Inventory.DiskGiB, 0, maxDiskGiB)); err != nil {
		return err
	}
	for size, n := range in.Inventory.Hugepages {
		if n < 0 {
			return types.FieldError("inventory.hugepages", "%s: negative page count %d", size, n)
		}
	}
	if in.Region == "" {
		return types.FieldError("region", "is required")
	}
	if in.Zone == "" {
		return types.FieldError("zone", "is required")
	}
	ctx := c.Request().Context()
	region, err := s.store.GetRegion(ctx, in.Region)
	if err != nil {
		return refError("region", err)
	}
	zone, err := s.store.GetZoneIn(ctx, region.ID, in.Zone)
	if err != nil {
		return refError("zone", err)
	}
	if zone.RegionID != region.ID {
		return types.FieldError("zone", "zone %s is in region %s, not %s", zone.Name, zone.RegionID, region.Name)
	}
	aggs, err := s.resolveAggregates(c, in.Aggregates)
	if err != nil {
		return err
	}
	if len(in.MachineID) > maxMachineIDLen || strings.IndexFunc(in.MachineID, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_' || r == ':')
	}) >= 0 {
		return types.FieldError("machine_id", "at most %d letters, digits, '-', '_' or ':'", maxMachineIDLen)
	}
	if err := s.checkTakeover(c, in.Name, in.MachineID); err != nil {
		return err
	}
	h, token, err := s.store.RegisterHost(ctx, in, store.HostPlacement{RegionID: region.ID, ZoneID: zone.ID, AggregateIDs: aggs})
	if err != nil {
		return err
	}
	setResource(c, h.ID)
	return object(c, http.StatusOK, h.Revision, types.HostRegistration{Host: h, Token: token})
}

// maxMachineIDLen bounds a registration's machine identity.
const maxMachineIDLen = 128

// checkTakeover refuses a registrar that re-registers a host which is up
// and heartbeating, unless it proves with the host's current agent token
// that it is the host's own agent: registering revokes the agent's token,
// and a registrar credential sits on every new host. The host is the one
// the registration would update: by name, else by machine identity (which
// the caller could forge, so it earns nothing without the token either).
func (s *Server) checkTakeover(c echo.Context, name, machineID string) error {
	if principalOf(c).Role != types.RoleRegistrar {
		return nil
	}
	ctx := c.Request().Context()
	h, err := s.store.RegistrationTarget(ctx, name, machineID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if h.State == types.HostDown || s.now().Sub(h.LastHeartbeat) > s.cfg.HostDownAfter {
		return nil // its agent is gone: a reinstalled host takes its place
	}
	if proof := c.Request().Header.Get(types.HeaderAgentToken); proof != "" {
		row, err := s.store.Authenticate(ctx, proof)
		if err == nil && row.Role == types.RoleAgent && row.HostID == h.ID {
			return nil
		}
	}
	return types.Errorf(types.CodeConflict, "host %s is up and its agent is heartbeating; only that agent (with %s) "+
		"or an admin may register it again", h.Name, types.HeaderAgentToken).WithDetail("host_id", h.ID)
}

// heartbeat records an agent's measured usage. Only the host's own agent
// (or an admin) may send it.
func (s *Server) heartbeat(c echo.Context) error {
	if err := allow(c, types.RoleAdmin, types.RoleAgent); err != nil {
		return err
	}
	p := principalOf(c)
	if p.Role == types.RoleAgent && p.HostID != c.Param("id") {
		return types.Errorf(types.CodeForbidden, "an agent may only send heartbeats for its own host")
	}
	var in types.Heartbeat
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := checkUsage(in.Usage); err != nil {
		return err
	}
	if err := s.store.Heartbeat(c.Request().Context(), c.Param("id"), in.Usage, s.now()); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// checkUsage refuses a negative or non-finite measurement: the failsafe
// would count it as memory or pages a host does not have.
func checkUsage(u types.Usage) error {
	for _, f := range []struct {
		field string
		v     int64
	}{{"usage.mem_free_mib", u.MemFreeMiB}, {"usage.disk_free_gib", u.DiskFreeGiB}, {"usage.guests", u.Guests}} {
		if f.v < 0 {
			return types.FieldError(f.field, "is %d; a measurement is never negative", f.v)
		}
	}
	if !(u.Load1 >= 0) || math.IsInf(u.Load1, 0) {
		return types.FieldError("usage.load1", "is %g; must be a finite number, 0 or more", u.Load1)
	}
	for size, n := range u.HugepagesFree {
		if n < 0 {
			return types.FieldError("usage.hugepages_free", "%s: is %d; a page count is never negative", size, n)
		}
	}
	return nil
}
