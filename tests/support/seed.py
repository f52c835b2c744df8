"""The seed's sample conf file, quoted verbatim from shared/reference/seed.md: it must parse as it is."""

SEED_CONF = r"""#-------------- file test.conf --------------

### server information
max_servers   80
max_requests  1000

### user and group to become
user        somebody
group       everybody

### logging ?
log_file    /var/log/server.log
log_level   3
pid_file    /tmp/server.pid

### access control
allow       .+\.(net|com)
allow       domain\.com
deny        a.+

### background the process?
background  1

### ports to bind
host        127.0.0.1
port        localhost:20204
port        20205

### reverse lookups ?
# reverse_lookups on

#-------------- file test.conf --------------
"""
