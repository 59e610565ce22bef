//! The process model: a supervisor that forks worker processes serving one set of listeners,
//! keeps them alive and replaces them without losing a request (issue 14, in progress).
