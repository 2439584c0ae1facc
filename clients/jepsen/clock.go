package jepsen

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ClockSkewer is a Cluster that can shift a node's wall clock: the node's
// own clock offset (dialkv node --clock-offset, changed at run time through
// its admin API, POST /v1/clock), since a static Go binary reads the clock
// through the vDSO (libfaketime cannot shift it) and containers share the
// host's kernel clock.
type ClockSkewer interface {
	// SetClockOffset sets node's clock offset (0: heal).
	SetClockOffset(node string, d time.Duration) error
}

// setClockOffset posts the offset to a node's admin API at admin.
func setClockOffset(admin string, d time.Duration) error {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Post("http://"+admin+"/v1/clock?"+url.Values{"offset": {d.String()}}.Encode(), "", nil)
	if err != nil {
		return fmt.Errorf("jepsen: clock offset at %s: %w", admin, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jepsen: clock offset at %s: %s: %s", admin, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// SetClockOffset implements ClockSkewer.
func (c *ProcCluster) SetClockOffset(n string, d time.Duration) error {
	return setClockOffset(c.admins[n], d)
}

// SetClockOffset implements ClockSkewer.
func (c *DockerCluster) SetClockOffset(n string, d time.Duration) error {
	return setClockOffset(c.admins[n], d)
}

var (
	_ ClockSkewer = (*ProcCluster)(nil)
	_ ClockSkewer = (*DockerCluster)(nil)
)
