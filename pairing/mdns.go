package pairing

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/grandcat/zeroconf"
)

// ServiceType is what the box advertises on the LAN.
const ServiceType = "_lowkey._tcp"

// Advert is a running mDNS advertisement.
type Advert struct{ srv *zeroconf.Server }

// Advertise announces the box on the LAN. If ip is unspecified, every
// multicast interface's addresses are announced; a specific ip is announced
// as is (RegisterProxy, which also works on loopback).
func Advertise(name string, ip net.IP, port int, version, keyPrefix string) (*Advert, error) {
	txt := []string{"version=" + version, "fp=" + keyPrefix, "name=" + name}
	instance := name
	if instance == "" {
		instance = "lowkey"
	}
	instance += " (" + keyPrefix + ")"
	var (
		srv *zeroconf.Server
		err error
	)
	if ip == nil || ip.IsUnspecified() {
		srv, err = zeroconf.Register(instance, ServiceType, "local.", port, txt, nil)
	} else {
		host, _ := os.Hostname()
		if host == "" {
			host = "lowkey"
		}
		srv, err = zeroconf.RegisterProxy(instance, ServiceType, "local.", port, "lowkey-"+keyPrefix+"."+host, []string{ip.String()}, txt, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("mDNS advertise: %w", err)
	}
	return &Advert{srv: srv}, nil
}

// Stop withdraws the advertisement.
func (a *Advert) Stop() {
	if a != nil && a.srv != nil {
		a.srv.Shutdown()
	}
}

// FoundHub is one box seen on the LAN. The TXT record is only a hint: the
// pairing exchange and the pinned keys are what authenticate a box.
type FoundHub struct {
	Name      string
	Addr      string // host:port
	KeyPrefix string
	Version   string
}

// Browse listens for boxes for the given time. Each call uses a fresh
// resolver: zeroconf v1.0.0's resolver is single-use.
func Browse(ctx context.Context, wait time.Duration) ([]FoundHub, error) {
	r, err := zeroconf.NewResolver(zeroconf.SelectIPTraffic(zeroconf.IPv4))
	if err != nil {
		return nil, fmt.Errorf("mDNS browse: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry, 16)
	if err := r.Browse(ctx, ServiceType, "local.", entries); err != nil {
		return nil, fmt.Errorf("mDNS browse: %w", err)
	}
	seen := map[string]FoundHub{}
	for {
		select {
		case e, ok := <-entries:
			if !ok {
				return sorted(seen), nil
			}
			if h, ok := hubFromEntry(e); ok {
				seen[h.Addr+"|"+h.KeyPrefix] = h
			}
		case <-ctx.Done():
			return sorted(seen), nil
		}
	}
}

func hubFromEntry(e *zeroconf.ServiceEntry) (FoundHub, bool) {
	if len(e.AddrIPv4) == 0 || e.Port <= 0 {
		return FoundHub{}, false
	}
	h := FoundHub{Name: e.Instance, Addr: net.JoinHostPort(e.AddrIPv4[0].String(), strconv.Itoa(e.Port))}
	for _, t := range e.Text {
		k, v, _ := strings.Cut(t, "=")
		switch k {
		case "name":
			h.Name = v
		case "fp":
			h.KeyPrefix = v
		case "version":
			h.Version = v
		}
	}
	return h, true
}

func sorted(m map[string]FoundHub) []FoundHub {
	out := make([]FoundHub, 0, len(m))
	for _, h := range m {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}
