// Package deploy holds the Kubernetes manifests and Prometheus configuration
// that run liveupdates in production, and the tests that parse them: the
// manifests are checked against the roles' configuration names, NATS's own
// configuration parser and the promises of DESIGN.md, and cluster_test.go
// shows that a three-node JetStream cluster keeps every acknowledged change
// when it loses one node. There is no Go code to import here.
package deploy
