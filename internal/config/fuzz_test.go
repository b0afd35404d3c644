package config_test

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/lameduck/lameduck/internal/config"
)

// FuzzLoad sets an integer, a duration, an address and one more variable
// (any name, any value) and checks Load's contract: it never panics, an error
// wraps ErrInvalid and comes with the zero Config, a Config it returns passes
// Validate, an integer it read is the decimal value it was given, and the
// environment is as it was.
func FuzzLoad(f *testing.F) {
	f.Add("4", "5s", ":8080", "LAMEDUCK_LOG_LEVEL", "debug")
	f.Add("010", "1m", "127.0.0.1:0", "LAMEDUCK_PRESTOPDELAY", "1s")
	f.Add("-1", "-1s", "[::1]:99999", "LAMEDUCK_PORT", "tcp://1.2.3.4:80")
	f.Add("0x10", "0s", "host:http", "LAMEDUCK_MAX_CONNS", "1_000")
	f.Add("99999999999999999999", "1e3s", "", "WORKERS", "0")
	f.Fuzz(func(t *testing.T, workers, prestop, addr, name, value string) {
		for _, s := range []string{workers, prestop, addr, name, value} {
			if strings.ContainsRune(s, 0) {
				return // no environment can hold a NUL
			}
		}
		if name == "" || strings.ContainsRune(name, '=') {
			return
		}
		clearEnv(t)
		env := map[string]string{"LAMEDUCK_WORKERS": workers, "LAMEDUCK_PRESTOP_DELAY": prestop,
			"LAMEDUCK_HTTP_ADDR": addr, name: value}
		for k, v := range env {
			old, had := os.LookupEnv(k)
			if err := os.Setenv(k, v); err != nil {
				return
			}
			defer func() {
				if had {
					os.Setenv(k, old)
				} else {
					os.Unsetenv(k)
				}
			}()
		}
		c, err := config.Load()
		if err != nil {
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Load() = %v; want an error wrapping ErrInvalid", err)
			}
			if c != (config.Config{}) {
				t.Fatalf("Load() = %+v with an error; want the zero Config", c)
			}
		} else {
			if err := c.Validate(); err != nil {
				t.Fatalf("Load() returned a Config that Validate refuses: %v", err)
			}
			if env["LAMEDUCK_WORKERS"] == workers && strings.TrimLeft(workers, "+") != strconv.Itoa(c.Workers) {
				t.Fatalf("LAMEDUCK_WORKERS=%q read as %d", workers, c.Workers)
			}
		}
		for k, v := range env {
			if got, _ := os.LookupEnv(k); got != v {
				t.Fatalf("%s after Load() = %q; want %q", k, got, v)
			}
		}
	})
}
