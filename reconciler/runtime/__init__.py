"""Running passes: the loop, the queue, the scheduler, HTTP and the daemon that wires them."""
