<?php

declare(strict_types=1);

namespace Courser\Relay;

use Courser\Exception\RelayException;
use Courser\Frame;

/**
 * A relay over a unix or TCP socket that the server listens on
 * (RR_RELAY=unix:///path.sock or tcp://host:port).
 *
 * The connection is opened lazily, on the first read, write or poll. Opening
 * it is retried until the connect timeout (5 s by default) has passed, since
 * the server may start listening a moment after it spawns the worker.
 */
final class SocketRelay implements RelayInterface
{
    /** Pause between two connection attempts, in microseconds. */
    private const RETRY_PAUSE_US = 50_000;

    private ?StreamRelay $connection = null;

    /** @var resource|null the connected socket */
    private $socket = null;

    /** @var array<int, \WeakReference<self>> the connected relays of the process, for shutdownInputs() */
    private static array $connected = [];

    /**
     * @param string $address        "unix:///path.sock" or "tcp://host:port"
     * @param float  $connectTimeout seconds during which connecting is retried
     */
    public function __construct(
        private readonly string $address,
        private readonly float $connectTimeout = 5.0,
    ) {
        if (!str_starts_with($address, 'unix://') && !str_starts_with($address, 'tcp://')) {
            throw new \InvalidArgumentException(sprintf('Not a unix:// or tcp:// address: "%s".', $address));
        }
    }

    /**
     * Returns the address this relay connects to.
     */
    public function address(): string
    {
        return $this->address;
    }

    public function waitFrame(): Frame
    {
        return $this->connection()->waitFrame();
    }

    public function send(Frame $frame): void
    {
        $this->connection()->send($frame);
    }

    public function hasFrame(): bool
    {
        return $this->connection()->hasFrame();
    }

    /**
     * Stops reading from a unix socket connection (shutdown(SHUT_RD)): the
     * server's next write to it fails with EPIPE, while this side can still
     * send. Does nothing on TCP, where a write to a socket whose peer shut
     * down reading still succeeds (Linux), nor before the connection is open.
     *
     * @return bool whether the input was shut down
     */
    public function shutdownInput(): bool
    {
        if ($this->socket === null || !is_resource($this->socket) || !str_starts_with($this->address, 'unix://')) {
            return false;
        }

        return @stream_socket_shutdown($this->socket, STREAM_SHUT_RD);
    }

    /**
     * shutdownInput() on every connected relay of the process to $address
     * (HttpWorker does this for RR_RELAY when a request ends the process).
     *
     * @return int how many were shut down
     */
    public static function shutdownInputs(string $address): int
    {
        $count = 0;
        foreach (self::$connected as $id => $reference) {
            $relay = $reference->get();
            if ($relay === null) {
                unset(self::$connected[$id]);
            } elseif ($relay->address === $address && $relay->shutdownInput()) {
                ++$count;
            }
        }

        return $count;
    }

    /**
     * Returns the open connection, connecting first if needed.
     */
    private function connection(): StreamRelay
    {
        return $this->connection ??= $this->connect();
    }

    private function connect(): StreamRelay
    {
        $context = stream_context_create(['socket' => ['tcp_nodelay' => true]]);
        $deadline = microtime(true) + $this->connectTimeout;

        while (true) {
            $remaining = max(0.1, $deadline - microtime(true));
            $socket = @stream_socket_client(
                $this->address,
                $errorCode,
                $errorMessage,
                $remaining,
                STREAM_CLIENT_CONNECT,
                $context,
            );
            if ($socket !== false) {
                stream_set_blocking($socket, true);
                $connection = new StreamRelay($socket, $socket);
                $this->socket = $socket;
                self::$connected[spl_object_id($this)] = \WeakReference::create($this);

                return $connection;
            }
            if (microtime(true) + self::RETRY_PAUSE_US / 1e6 >= $deadline) {
                throw new RelayException(sprintf(
                    'Could not connect to %s within %.1f s: %s (%d).',
                    $this->address,
                    $this->connectTimeout,
                    $errorMessage,
                    $errorCode,
                ));
            }
            usleep(self::RETRY_PAUSE_US);
        }
    }
}
