package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/producer"
	"github.com/nostressplanner/liveupdates/wire"
)

// runPublish publishes one change, to NATS directly or through the ingest
// API, and prints {"id","seq"} once it is stored.
func runPublish(ctx context.Context, env *settings) error {
	c := producer.Change{
		EventID:  env.Flag("event"),
		Type:     env.Flag("type"),
		Data:     json.RawMessage(env.Flag("data")),
		ID:       env.Flag("id"),
		SocketID: env.Flag("socket-id"),
	}
	var errs []error
	if c.EventID == "" {
		errs = append(errs, errors.New("--event is required"))
	} else if err := wire.ValidateEventID(c.EventID); err != nil {
		errs = append(errs, fmt.Errorf("--event: %w", err))
	}
	if c.Type == "" {
		errs = append(errs, errors.New("--type is required"))
	} else if err := wire.ValidateType(c.Type); err != nil {
		errs = append(errs, fmt.Errorf("--type: %w", err))
	}
	if !json.Valid(c.Data) {
		errs = append(errs, fmt.Errorf("--data is not valid JSON: %q", env.Flag("data")))
	}
	if c.ID != "" {
		if err := wire.ValidateID(c.ID); err != nil {
			errs = append(errs, fmt.Errorf("--id: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publish:\n%w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var res producer.Result
	var err error
	if base := env.Flag("api-url"); base != "" {
		res, err = publishHTTP(ctx, base, env.Getenv("LIVE_API_KEY"), c)
	} else {
		res, err = publishNATS(ctx, env, c)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(env.stdout).Encode(map[string]any{"id": res.ID, "seq": res.Seq, "duplicate": res.Duplicate})
}

func publishNATS(ctx context.Context, env *settings, c producer.Change) (producer.Result, error) {
	conn, _, err := dialTool(env, "publish", keepTrying)
	if err != nil {
		return producer.Result{}, err
	}
	defer conn.nc.Close()
	res, err := producer.NewPublisher(conn.js, producer.Options{}).Publish(ctx, c)
	if err != nil {
		return producer.Result{}, fmt.Errorf("publish %s %s: %w", c.EventID, c.Type, err)
	}
	return res, nil
}

func publishHTTP(ctx context.Context, base, key string, c producer.Change) (producer.Result, error) {
	if key == "" {
		return producer.Result{}, errors.New("publish through the API needs LIVE_API_KEY in the environment")
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + "/v1/events/" + url.PathEscape(c.EventID) + "/" + url.PathEscape(c.Type))
	if err != nil {
		return producer.Result{}, fmt.Errorf("--api-url=%q: %w", base, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(c.Data))
	if err != nil {
		return producer.Result{}, fmt.Errorf("--api-url=%q: %w", base, err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if c.ID != "" {
		req.Header.Set("Idempotency-Key", c.ID)
	}
	if c.SocketID != "" {
		req.Header.Set("X-Socket-Id", c.SocketID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return producer.Result{}, fmt.Errorf("post %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return producer.Result{}, fmt.Errorf("read answer of %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode/100 != 2 {
		var e wire.ErrorBody
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return producer.Result{}, fmt.Errorf("api answered %d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return producer.Result{}, fmt.Errorf("api answered %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	var res struct {
		ID        string `json:"id"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return producer.Result{}, fmt.Errorf("api answer %q: %w", body, err)
	}
	return producer.Result{ID: res.ID, Seq: res.Seq, Duplicate: res.Duplicate}, nil
}
