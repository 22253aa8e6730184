package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/placement"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Unknown guests: managed guests a host's agent found that corrald has no
// server for (a database restored from a backup, a host registered anew).
// Agents report them and never touch them; an admin adopts or deletes each.

// unknownGuestRoutes registers the admin's view of a host's unknown guests.
func (s *Server) unknownGuestRoutes(g *echo.Group) {
	g.GET("/hosts/:id/unknown-guests", s.listUnknownGuests)
	g.POST("/hosts/:id/unknown-guests/:server_id/adopt", s.adoptGuest)
	g.DELETE("/hosts/:id/unknown-guests/:server_id", s.deleteUnknownGuest)
}

// unknownHost checks that the caller is an admin and finds the host.
func (s *Server) unknownHost(c echo.Context) (types.Host, error) {
	if err := allow(c, adminOnly...); err != nil {
		return types.Host{}, err
	}
	return s.store.GetHost(c.Request().Context(), c.Param("id"))
}

// listUnknownGuests answers GET /v1/hosts/{id}/unknown-guests: what the
// host's agent last reported, each with the deletion recorded for it.
func (s *Server) listUnknownGuests(c echo.Context) error {
	h, err := s.unknownHost(c)
	if err != nil {
		return err
	}
	l, err := s.store.UnknownGuests(c.Request().Context(), h.ID)
	return listJSON(c, types.List[types.UnknownGuest]{Items: l}, err)
}

// adoptGuest carries out POST /v1/hosts/{id}/unknown-guests/{server_id}/adopt:
// the server record is rebuilt from the guest's metadata (with the
// references of the optional body where the metadata's no longer exist),
// and its claim taken on the host, in one transaction. The flavor must
// describe the guest as it runs: adopting changes nothing on the host.
func (s *Server) adoptGuest(c echo.Context) error {
	h, err := s.unknownHost(c)
	if err != nil {
		return err
	}
	// The body is a JSON object like every POST's: {} keeps what the
	// guest's metadata names.
	var in types.GuestAdopt
	if err := s.decode(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	g, err := s.store.GetUnknownGuest(ctx, h.ID, c.Param("server_id"))
	if err != nil {
		return err
	}
	setResource(c, g.ServerID)
	pick := func(override, meta string) string {
		if override != "" {
			return override
		}
		return meta
	}
	ref := func(field, v string, get func(context.Context, string) error) error {
		if v == "" {
			return types.FieldError(field, "the guest's metadata names no %s: give one", field)
		}
		if err := get(ctx, v); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return types.Errorf(types.CodeInvalidReference, "%s %q of the guest no longer exists: give another", field, v).
					WithDetail("field", field)
			}
			return refError(field, err)
		}
		return nil
	}
	var project types.Project
	var flavor types.Flavor
	var image types.Image
	if err := first(
		ref("project", pick(in.Project, g.ProjectID), func(ctx context.Context, v string) (err error) {
			project, err = s.store.GetProject(ctx, v)
			return err
		}),
		ref("flavor", pick(in.Flavor, g.FlavorID), func(ctx context.Context, v string) (err error) {
			flavor, err = s.store.GetFlavor(ctx, v)
			return err
		}),
		ref("image", pick(in.Image, g.ImageID), func(ctx context.Context, v string) (err error) {
			image, err = s.store.GetImage(ctx, v)
			return err
		})); err != nil {
		return err
	}
	if g.VCPUs > 0 && (flavor.VCPUs != g.VCPUs || flavor.RAMMiB != g.RAMMiB || flavor.Hugepages != g.Hugepages ||
		flavor.DiskGiB < g.DiskGiB) {
		return types.Errorf(types.CodeConflict, "flavor %s (%d vCPUs, %d MiB, %d GiB, hugepages %v) does not describe the guest "+
			"(%d vCPUs, %d MiB, %d GiB, hugepages %v): give a flavor that does", flavor.Name, flavor.VCPUs, flavor.RAMMiB,
			flavor.DiskGiB, flavor.Hugepages, g.VCPUs, g.RAMMiB, g.DiskGiB, g.Hugepages).WithDetail("field", "flavor")
	}
	name := pick(in.Name, g.Name)
	if err := checkName("name", name, maxNameLen); err != nil {
		return err
	}
	srv := types.Server{Name: name, Kind: types.KindVM, ProjectID: project.ID, FlavorID: flavor.ID, ImageID: image.ID,
		DesiredState: types.DesiredStopped, State: types.ServerStopped}
	if g.DomainID > 0 || g.State == "running" {
		srv.DesiredState, srv.State = types.DesiredActive, types.ServerActive
	}
	out, err := s.store.AdoptGuest(ctx, h.ID, g.ServerID, store.AdoptedServer{Server: srv, Claim: s.adoptClaim(h, flavor)})
	if err != nil {
		return err
	}
	s.forget(c, h.ID)
	s.notify(c, h.ID)
	return object(c, http.StatusCreated, out.Revision, out)
}

// adoptClaim is what an adopted guest takes on its host, as placement
// would have claimed it: its vCPUs and disk, its RAM plus the hypervisor
// overhead (only the overhead when hugepages back its RAM), one guest.
func (s *Server) adoptClaim(h types.Host, f types.Flavor) store.Allocation {
	ov := placement.DefaultOverhead
	if s.cfg.Placement.Overhead != nil {
		ov = *s.cfg.Placement.Overhead
	}
	a := store.Allocation{VCPUs: f.VCPUs, RAMMiB: ov.For(f.RAMMiB), DiskGiB: f.DiskGiB, Guests: 1}
	if f.Hugepages {
		pageKiB := int64(placement.DefaultHugepageSizeKiB)
		for size := range h.Inventory.Hugepages {
			if n, err := strconv.ParseInt(size, 10, 64); err == nil && n > 0 && n < pageKiB*512 {
				pageKiB = n
			}
		}
		a.Hugepages = (f.RAMMiB*1024 + pageKiB - 1) / pageKiB
	} else {
		a.RAMMiB += f.RAMMiB
	}
	return a
}

// deleteUnknownGuest carries out DELETE
// /v1/hosts/{id}/unknown-guests/{server_id}: it records the guest's
// deletion (a tombstone) for the host's agent, which removes the guest and
// confirms. 202 with the tombstone.
func (s *Server) deleteUnknownGuest(c echo.Context) error {
	h, err := s.unknownHost(c)
	if err != nil {
		return err
	}
	setResource(c, c.Param("server_id"))
	ts, err := s.store.DeleteUnknownGuest(c.Request().Context(), h.ID, c.Param("server_id"))
	if err != nil {
		return err
	}
	s.notify(c, h.ID)
	return c.JSON(http.StatusAccepted, ts)
}

// unknownCollector exports corral_unknown_guests by host, read from the
// store at each scrape so that every replica answers the same.
type unknownCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func newUnknownCollector(s *Server) *unknownCollector {
	return &unknownCollector{s: s, desc: prometheus.NewDesc("corral_unknown_guests",
		"Managed guests a host runs that corrald has no server for (adopt or delete them).", []string{"host"}, nil)}
}

// Describe implements prometheus.Collector.
func (u *unknownCollector) Describe(ch chan<- *prometheus.Desc) { ch <- u.desc }

// Collect implements prometheus.Collector.
func (u *unknownCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := u.s.store.UnknownGuestCounts(ctx)
	if err != nil {
		u.s.log.Error("count unknown guests for /metrics", "error", err)
		return
	}
	for host, n := range counts {
		ch <- prometheus.MustNewConstMetric(u.desc, prometheus.GaugeValue, float64(n), host)
	}
}

var _ prometheus.Collector = (*unknownCollector)(nil)
