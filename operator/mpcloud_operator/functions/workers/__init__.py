"""Language workers the runtime host starts as child processes (run as scripts, never imported by the host)."""
