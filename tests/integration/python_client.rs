//! Python seed worker compatibility.
