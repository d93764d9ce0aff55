# A Nomad job running sup as the init of a Docker task (the image from
# contrib/docker/Dockerfile). Nomad places the task across the cluster; sup supervises the
# processes inside it, and Prometheus scrapes /metrics of every allocation.
#
#   nomad var put nomad/jobs/sup token="$(openssl rand -hex 32)"
#   nomad job run contrib/nomad/sup.nomad
#
# Timing: on stop Nomad sends kill_signal, waits kill_timeout, then kills. sup stops every
# job, kills what is left when --grace (20s) ends and exits at most 2 s later: 30 s covers it.
job "sup" {
  type = "service"

  group "sup" {
    count = 1

    network {
      port "http" {
        to = 9273
      }
    }

    # A critical job's end is the container's: Nomad restarts the task by its own policy.
    restart {
      attempts = 3
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    task "sup" {
      driver       = "docker"
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image = "sup:latest"
        # ENTRYPOINT is `sup daemon --init`; these replace the image's CMD.
        args  = ["--grace", "20s"]
        ports = ["http"]
        mount {
          type     = "bind"
          source   = "local/sup.yaml"
          target   = "/etc/sup/sup.yaml"
          readonly = true
        }
        mount {
          type     = "bind"
          source   = "secrets/token"
          target   = "/etc/sup/token"
          readonly = true
        }
      }

      # The same example config as the image's (contrib/docker/sup.yaml).
      template {
        destination = "local/sup.yaml"
        data        = <<-YAML
          daemon:
            logdir: /var/log/sup
            http:
              listen: "0.0.0.0:9273"
              token_file: /etc/sup/token
          programs:
            app:
              cmd: ["sh", "-c", "echo app listening; exec sleep infinity"]
              critical: true
              stdout: inherit
              stderr: inherit
              prefix: true
            sidecar:
              cmd: ["sh", "-c", "while :; do echo sidecar alive; sleep 60; done"]
              autorestart: always
              stdout: inherit
              stderr: inherit
              prefix: true
        YAML
      }

      template {
        destination = "secrets/token"
        perms       = "0400"
        data        = "{{ with nomadVar \"nomad/jobs/sup\" }}{{ .token }}{{ end }}"
      }

      service {
        name     = "sup"
        port     = "http"
        provider = "nomad"
        tags     = ["metrics"]

        # /healthz: the daemon's loop answers (no token needed).
        check {
          name     = "alive"
          type     = "http"
          path     = "/healthz"
          interval = "10s"
          timeout  = "2s"
        }

        # /readyz: every job meant to be up is up. Without the token it answers the verdict
        # alone (no names), so the check carries no secret.
        check {
          name     = "ready"
          type     = "http"
          path     = "/readyz"
          interval = "5s"
          timeout  = "2s"
        }
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
