//! The PROXY protocol (HAProxy's, versions 1 and 2): the real client's address behind a load
//! balancer (issue 15, in progress).
