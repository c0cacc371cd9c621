//! Workspace-level tests live in .
