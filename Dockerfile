# mindie-ms container image: ms_coordinator, ms_controller, ms_deployer, msctl and mindie_sim on plain Debian.
#   docker build -t mindie-ms:latest .
# The PD cluster manifests run the Coordinator and the Controller from this image by default
# (`pd_cluster.ms_image`, default mindie-ms:latest); the MindIE Server pods use the spec's `image`.

# ---- build: the Swift toolchain and the -dev packages; the Swift runtime is linked statically
FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libh2o-evloop-dev libssl-dev libjemalloc-dev libxxhash-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift Package.resolved* ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib \
 && mkdir -p /out \
 && for exe in ms_coordinator ms_controller ms_deployer mindie_sim msctl; do cp "$(swift build -c release --static-swift-stdlib --show-bin-path)/$exe" /out/; done

# ---- runtime: Debian's shared libraries only (checked by scripts/check_binaries.sh with the toolchain hidden)
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libh2o-evloop0.13 libssl3 libjemalloc2 libxxhash0 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1001 mindie && useradd --uid 1001 --gid 1001 --no-create-home --shell /usr/sbin/nologin mindie
COPY --from=build /out/ /usr/local/bin/
COPY conf /usr/local/share/mindie-ms/conf
# the manifests' securityContext runs as 1001 with a read-only root filesystem
USER 1001:1001
WORKDIR /usr/local/share/mindie-ms
ENTRYPOINT []
CMD ["ms_coordinator", "--help"]
