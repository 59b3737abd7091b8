package main

import (
	"crypto/rand"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nostressplanner/liveupdates/ops"
)

// natsUserPermissions turns a role's permissions (ops.NATSRoles) into
// nats-server's form.
func natsUserPermissions(p ops.NATSPermissions) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.Publish},
		Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
	}
}

// devUsers are the NATS users of dev's embedded server: one per role, with
// the same permissions as in deploy/nats.yaml, and random passwords that
// live only in this process. A client that presents no credentials (the
// operator tools, a role started by hand against dev) is the operator user,
// which may do anything: dev listens on loopback by default and is never
// run in production.
type devUsers struct {
	passwords map[string]string
}

func newDevUsers() *devUsers {
	d := &devUsers{passwords: map[string]string{}}
	for name := range ops.NATSRoles() {
		d.passwords[name] = rand.Text()
	}
	return d
}

// configure adds the users to the embedded server's options.
func (d *devUsers) configure(o *server.Options) {
	for name, perms := range ops.NATSRoles() {
		o.Users = append(o.Users, &server.User{Username: name, Password: d.passwords[name], Permissions: natsUserPermissions(perms)})
	}
	o.NoAuthUser = "operator"
}

// splitUsers gives the api, the poller and the relay in dev each a NATS
// connection of its own, logged in as the role's own user on the embedded
// server, so each runs with exactly the permissions it has in a cluster.
// newIngest, newPoller and newRelay pick theirs with forRole; r keeps its
// own connection (the operator's) for ensuring the stream and readiness.
func (r *role) splitUsers(env *settings, d *devUsers, ns *server.Server) error {
	for _, name := range []string{"api", "poller", "relay"} {
		rr, err := r.as(env, d, name, ns)
		if err != nil {
			return err
		}
		if r.byRole == nil {
			r.byRole = map[string]*role{}
		}
		r.byRole[name] = rr
	}
	return nil
}

// forRole returns the role's own view of r: its connection when dev split
// the users, r itself otherwise (a process running one role).
func (r *role) forRole(name string) *role {
	if rr := r.byRole[name]; rr != nil {
		return rr
	}
	return r
}

// as returns a copy of r (sharing its logger, registry and checks) whose
// NATS connection is the named user's on the embedded server. r.close
// drains the connection too.
func (r *role) as(env *settings, d *devUsers, name string, ns *server.Server) (*role, error) {
	c, err := dialNATS(env.Getenv, name, r.log.WithField("component", name), keepTrying,
		nats.InProcessServer(ns), nats.UserInfo(name, d.passwords[name]))
	if err != nil {
		return nil, fmt.Errorf("dev %s: %w", name, err)
	}
	cp := *r
	cp.natsConn, cp.extra, cp.byRole = c, nil, nil
	r.extra = append(r.extra, c.nc)
	return &cp, nil
}
