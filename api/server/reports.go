package server

import (
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// Right-sizing defaults (issue 15): p95 CPU below 10 % and memory below
// 30 % of the flavor over 7 days, judged on at least a day of samples.
const (
	defaultRightsizingWindow = 7 * 24 * time.Hour
	defaultCPUP95Below       = 10.0
	defaultMemBelow          = 30.0
	defaultMinHours          = 24
	defaultHeadroom          = 1.5
)

func (s *Server) reportRoutes(g *echo.Group) {
	g.GET("/reports/rightsizing", s.rightsizing)
}

// rightsizing answers GET /v1/reports/rightsizing: the servers the caller
// may see (an admin all, a project's token its own) whose usage over the
// window stays below the thresholds, each with the smallest flavor that
// still fits its p95 usage with headroom, and what that frees per rack.
func (s *Server) rightsizing(c echo.Context) error {
	if err := allow(c, readers...); err != nil {
		return err
	}
	q, err := queryOf(c, "window", "cpu_p95_below", "mem_below", "min_hours", "headroom")
	if err != nil {
		return err
	}
	p := rightsizingParams{window: defaultRightsizingWindow, cpuBelow: defaultCPUP95Below, memBelow: defaultMemBelow,
		minHours: defaultMinHours, headroom: defaultHeadroom}
	if v, ok := q["window"]; ok {
		if p.window, err = parseWindow(v); err != nil || p.window < time.Hour || p.window > store.UsageKeepHours*time.Hour {
			return types.FieldError("window", "must be a duration from 1h to %dd, e.g. 7d or 36h", store.UsageKeepHours/24)
		}
	}
	pct := func(name string, dst *float64, lo, hi float64) error {
		v, ok := q[name]
		if !ok {
			return nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || f < lo || f > hi {
			return types.FieldError(name, "must be a number from %g to %g", lo, hi)
		}
		*dst = f
		return nil
	}
	// Thresholds above 100 % flag every judged server: a view of all
	// measured usage.
	if err := first(pct("cpu_p95_below", &p.cpuBelow, 0, 1000), pct("mem_below", &p.memBelow, 0, 1000),
		pct("headroom", &p.headroom, 1, 10)); err != nil {
		return err
	}
	if v, ok := q["min_hours"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.UsageKeepHours {
			return types.FieldError("min_hours", "must be an integer from 1 to %d", store.UsageKeepHours)
		}
		p.minHours = n
	}
	now := s.now()
	// The current hour counts; the window reaches back whole hours.
	since := now.Add(-p.window).Unix() / 3600
	data, err := s.store.Usage(c.Request().Context(), since+1)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rightsize(data, p))
}

// parseWindow reads a Go duration, or a number of days ("7d").
func parseWindow(v string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

type rightsizingParams struct {
	window             time.Duration
	cpuBelow, memBelow float64
	minHours           int
	headroom           float64
}

// p95 is the nearest-rank 95th percentile of v (sorted in place).
func p95(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[int(math.Ceil(0.95*float64(len(v))))-1]
}

// rightsize judges every server of data. A server is judged only with at
// least minHours hours of CPU samples and some memory samples: CPU by the
// p95 of its hourly means, memory by the p95 of its hourly peaks.
func rightsize(data store.UsageData, p rightsizingParams) types.RightsizingReport {
	out := types.RightsizingReport{Window: p.window.String(), CPUP95Below: p.cpuBelow, MemBelow: p.memBelow,
		MinHours: p.minHours, Headroom: p.headroom, Servers: []types.RightsizingServer{}, Racks: []types.RightsizingRack{}}
	racks := map[string]*types.RightsizingRack{}
	for _, srv := range data.Servers {
		var cpu, mem []float64
		cpuMax := 0.0
		for _, h := range data.Hours[srv.ID] {
			if h.Samples > 0 {
				cpu = append(cpu, float64(h.CPUSum)/float64(h.Samples)/100)
				cpuMax = max(cpuMax, float64(h.CPUMax)/100)
			}
			if h.MemSamples > 0 {
				mem = append(mem, float64(h.MemMax)/1024)
			}
		}
		if len(cpu) < p.minHours || len(mem) == 0 || srv.VCPUs <= 0 || srv.RAMMiB <= 0 {
			continue
		}
		cpuP95, memMiB := p95(cpu), p95(mem)
		memPct := memMiB / float64(srv.RAMMiB) * 100
		if cpuP95 >= p.cpuBelow || memPct >= p.memBelow {
			continue
		}
		r := types.RightsizingServer{ServerID: srv.ID, Name: srv.Name, ProjectID: srv.ProjectID, HostID: srv.HostID,
			ZoneID: srv.ZoneID, FlavorID: srv.FlavorID, Flavor: srv.Flavor, VCPUs: srv.VCPUs, RAMMiB: srv.RAMMiB,
			Hours: len(cpu), CPUP95: round2(cpuP95), CPUMax: round2(cpuMax), MemP95: round2(memPct),
			MemP95MiB: int64(math.Ceil(memMiB))}
		needCPU := max(1, int64(math.Ceil(cpuP95/100*float64(srv.VCPUs)*p.headroom)))
		needRAM := int64(math.Ceil(memMiB * p.headroom))
		if f := smallerFlavor(data.Flavors, srv, needCPU, needRAM); f != nil {
			r.Suggested = &types.FlavorSize{ID: f.ID, Name: f.Name, VCPUs: f.VCPUs, RAMMiB: f.RAMMiB, DiskGiB: f.DiskGiB}
			r.FreesVCPUs, r.FreesRAMMiB = srv.VCPUs-f.VCPUs, srv.RAMMiB-f.RAMMiB
			rk := racks[srv.ZoneID]
			if rk == nil {
				rk = &types.RightsizingRack{ZoneID: srv.ZoneID, Zone: data.Zones[srv.ZoneID]}
				racks[srv.ZoneID] = rk
			}
			rk.Servers++
			rk.FreesVCPUs += r.FreesVCPUs
			rk.FreesRAMMiB += r.FreesRAMMiB
		} else {
			r.Reason = "no smaller flavor fits " + strconv.FormatInt(needCPU, 10) + " vCPUs and " +
				strconv.FormatInt(needRAM, 10) + " MiB (p95 usage with headroom) with the same disk and hugepages"
		}
		out.Servers = append(out.Servers, r)
	}
	for _, rk := range racks {
		out.Racks = append(out.Racks, *rk)
	}
	sort.Slice(out.Racks, func(i, j int) bool {
		return out.Racks[i].Zone < out.Racks[j].Zone || (out.Racks[i].Zone == out.Racks[j].Zone && out.Racks[i].ZoneID < out.Racks[j].ZoneID)
	})
	return out
}

// smallerFlavor returns the smallest flavor (RAM, then vCPUs) that fits
// the need and is smaller than the server's in some dimension and larger
// in none, with at least its disk and the same hugepages; nil if none.
func smallerFlavor(flavors []store.UsageFlavor, srv store.UsageServer, needCPU, needRAM int64) *store.UsageFlavor {
	var best *store.UsageFlavor
	for i := range flavors {
		f := &flavors[i]
		if f.ID == srv.FlavorID || f.Hugepages != srv.Hugepages || f.DiskGiB < srv.DiskGiB ||
			f.VCPUs < needCPU || f.RAMMiB < needRAM || f.VCPUs > srv.VCPUs || f.RAMMiB > srv.RAMMiB ||
			(f.VCPUs == srv.VCPUs && f.RAMMiB == srv.RAMMiB) {
			continue
		}
		if best == nil || f.RAMMiB < best.RAMMiB || (f.RAMMiB == best.RAMMiB && (f.VCPUs < best.VCPUs ||
			(f.VCPUs == best.VCPUs && f.Name < best.Name))) {
			best = f
		}
	}
	return best
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
