FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backchannel ./backchannel
COPY web ./web
COPY replay_data ./replay_data
RUN pip install --no-cache-dir -e '.[postgres]'
ENV BACKCHANNEL_DB=sqlite:////data/backchannel.db
EXPOSE 8080
CMD ["backchannel", "serve", "--host", "0.0.0.0", "--port", "8080"]
