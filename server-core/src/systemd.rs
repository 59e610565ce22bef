//! Running under systemd: socket activation (`LISTEN_FDS`) and readiness notification
//! (`sd_notify`) (issue 14, in progress).
