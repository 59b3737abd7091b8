package main

import (
	"io"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/env"
)

// newLogger builds the process logger: JSON for the deployed roles, text for
// dev and the operator tools, unless LIVE_LOG_FORMAT says otherwise.
func newLogger(getenv func(string) string, out io.Writer, defaultFormat string) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(out)
	r := env.NewReader(getenv)
	format := defaultFormat
	r.String("LIVE_LOG_FORMAT", &format)
	switch format {
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	case "text":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	default:
		r.Fail("LIVE_LOG_FORMAT", format, "json or text")
	}
	if v, ok := r.Lookup("LIVE_LOG_LEVEL"); ok {
		if lvl, err := logrus.ParseLevel(v); err != nil {
			r.Fail("LIVE_LOG_LEVEL", v, "debug, info, warn or error")
		} else {
			log.SetLevel(lvl)
		}
	}
	return log, r.Err()
}

// httpAddr is LIVE_HTTP_ADDR or :8080.
func httpAddr(getenv func(string) string) string {
	addr := ":8080"
	env.NewReader(getenv).String("LIVE_HTTP_ADDR", &addr)
	return addr
}
