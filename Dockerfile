# Multi-stage build: compile in the Rust image, run as a non-root user on Debian slim.
#   docker build -t switchboard:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchboard

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent switchboard \
    && mkdir -p /var/lib/switchboard \
    && chown 10001:10001 /var/lib/switchboard
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
COPY --from=build /src/models /opt/switchboard/models
COPY --from=build /src/knowledge-base /opt/switchboard/knowledge-base
COPY --from=build /src/config/example.toml /etc/switchboard/example.toml
WORKDIR /opt/switchboard
USER 10001:10001
ENV SWITCHBOARD_SERVER__HOST=0.0.0.0 \
    DATABASE_URL=sqlite:///var/lib/switchboard/switchboard.db?mode=rwc \
    SWITCHBOARD_AI__CACHE_DIR=/var/lib/switchboard/cache \
    SWITCHBOARD_AI__INDEX_DIR=/var/lib/switchboard/index \
    SWITCHBOARD_LOG__FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/switchboard"]
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
