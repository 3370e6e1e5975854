# Two stages: build with cmake (Pingora's zlib-ng needs it), then a slim non-root runtime.
# docker build -t tether . && docker run -p 8000:8000 -p 9100:9100 \
#   -v $PWD/my.yaml:/etc/tether/tether.yaml -e TETHER_SESSION_KEY=... tether
FROM rust:1-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tether \
 && target/release/tether --version

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin tether \
 && mkdir -p /etc/tether /run/tether \
 && chown tether:tether /run/tether
COPY --from=build /src/target/release/tether /usr/local/bin/tether
COPY conf/docker.yaml /etc/tether/tether.yaml
USER tether
# mimalloc commits arena memory as it is used, not ahead (README, performance).
ENV MIMALLOC_ARENA_EAGER_COMMIT=0
EXPOSE 8000 9100
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["-c", "/etc/tether/tether.yaml"]
