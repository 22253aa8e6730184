package placement

// Place chooses a host for one server. It filters every host (one linear
// scan, no allocation per host), weighs the feasible ones and keeps the best,
// and returns a Decision with one Claim that the store takes with a
// compare-and-swap on the host's generation.
//
// Place has no side effect, so a dry run is a call to Place that is not
// followed by a claim, and it gives the same answer. If nothing fits it
// returns a Decision without claims and a *FitError (matching
// ErrNoValidHost) carrying the same Explanation; a malformed request returns
// an error wrapping ErrInvalidRequest.
//
// After a lost compare-and-swap the caller refreshes the host with Update
// and calls Place again; a decision over 10,000 hosts costs well under a
// millisecond.
func (s *Snapshot) Place(req Request) (Decision, error) {
	c, err := s.compile(req.Constraints, req.Flavor, req.Affinity, req.Now)
	if err != nil {
		return Decision{}, err
	}
	return s.placeCompiled(&c)
}

// placeCompiled is Place after compilation: one scan that filters, counts
// and keeps the best host.
func (s *Snapshot) placeCompiled(c *compiled) (Decision, error) {
	var t tally
	best := int32(-1)
	var bestScore int64
	for _, i := range s.skipRegion(c, &t) {
		x := &s.idx[i]
		r, avail, nd := s.check(c, i, &x.used, x.free)
		if r != ReasonNone {
			t.reject(r, i, avail, nd, s.sample)
			continue
		}
		t.fit++
		// Hosts are visited in ID order: a strictly greater score is needed
		// to replace the current best, so ties keep the smallest ID.
		if sc := score(c, x, &x.used); best < 0 || sc > bestScore {
			best, bestScore = i, sc
		}
	}
	d := Decision{Weigher: c.weigher, Explanation: s.explain(&t, c.margin)}
	if c.bare {
		d.Weigher = WeighBestFit
	}
	if best < 0 {
		return d, &FitError{Explanation: d.Explanation}
	}
	cl := s.claimOn(c, best)
	d.Claims = []Claim{cl}
	d.Region = cl.Region
	return d, nil
}
