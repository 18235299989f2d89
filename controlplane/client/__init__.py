"""Client machinery shared by every component: typed client, informers, work queue, leader election."""
