# Builds genetika with the official Swift image and runs it on Debian slim.
ARG SWIFT_VERSION=6.3
FROM swift:${SWIFT_VERSION}-bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
COPY scripts/patches scripts/patches
# librdkafka >= 2.1 (built from Debian's trixie source when the system one is older).
RUN GENETIKA_BUILD_ONLY=1 scripts/install-deps.sh
COPY . .
RUN swift build -c release --static-swift-stdlib --product genetika \
 && cp "$(swift build -c release --show-bin-path)/genetika" /genetika

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libxml2 libsqlite3-0 libpq5 libssl3 libzstd1 liblz4-1 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /genetika /usr/local/bin/genetika
COPY config.json /app/config.json
COPY Fixtures /app/Fixtures
ENTRYPOINT ["genetika"]
CMD ["run", "--config", "/app/config.json"]
