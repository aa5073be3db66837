<?php

declare(strict_types=1);

namespace Courser\RPC;

use Courser\Exception\RelayException;
use Courser\Frame;
use Courser\Relay\Relay;
use Courser\Relay\RelayInterface;
use Courser\Relay\SocketRelay;

/**
 * A Goridge RPC client: calls methods of the application server (Courser or
 * RoadRunner), such as informer.Workers, resetter.Reset, kv.* or jobs.*.
 *
 * Wire format (compatible with spiral/goridge's RPC): a request is one frame
 * whose flags are the codec, whose options are [seq, strlen(method)] and
 * whose payload is the method name followed by the encoded argument. The
 * reply echoes both options and the method name; with the ERROR flag (0x40)
 * its body is the server's error message.
 *
 * The sequence number starts at 1 and goes up by one with every call, failed
 * calls included. It belongs to the connection: an RPC object and the clients
 * that withServicePrefix() derives from it share one counter. (The official
 * client keeps one static counter for the whole process; the server only
 * echoes it, so both work.)
 */
final class RPC implements RPCInterface
{
    /** The address used when neither an address nor RR_RPC is given. */
    public const DEFAULT_ADDRESS = 'tcp://127.0.0.1:6001';

    private readonly RelayInterface $relay;

    private readonly string $address;

    /** The next sequence number, shared with derived clients. */
    private \stdClass $sequence;

    private ?string $service = null;

    /**
     * @param RelayInterface|string|null $connection     a relay, an address ("tcp://host:port" or
     *                                                   "unix:///path"), or null for the RR_RPC
     *                                                   environment variable (default tcp://127.0.0.1:6001)
     * @param float                      $connectTimeout seconds during which connecting an address is retried
     *
     * @throws \InvalidArgumentException when the address is not a tcp:// or unix:// address
     */
    public function __construct(RelayInterface|string|null $connection = null, float $connectTimeout = 5.0)
    {
        if ($connection instanceof RelayInterface) {
            $this->relay = $connection;
            $this->address = $connection instanceof SocketRelay ? $connection->address() : get_debug_type($connection);
        } else {
            $address = $connection ?? self::addressFromEnvironment();
            $this->relay = self::relayFor($address, $connectTimeout);
            $this->address = $address;
        }
        $this->sequence = new \stdClass();
        $this->sequence->next = 1;
    }

    /**
     * A client for the address that the server gives its workers in RR_RPC
     * (tcp://127.0.0.1:6001 when it is not set).
     */
    public static function fromEnvironment(): self
    {
        return new self(self::addressFromEnvironment());
    }

    /**
     * Returns RR_RPC, or DEFAULT_ADDRESS when it is not set.
     */
    public static function addressFromEnvironment(): string
    {
        $address = getenv('RR_RPC');

        return $address === false || $address === '' ? self::DEFAULT_ADDRESS : $address;
    }

    /**
     * Returns the address (or relay type) this client talks to.
     */
    public function address(): string
    {
        return $this->address;
    }

    public function withServicePrefix(string $service): self
    {
        $clone = clone $this;
        $clone->service = $service;

        return $clone;
    }

    public function call(string $method, mixed $payload, int $codec = self::JSON): mixed
    {
        if ($this->service !== null) {
            $method = $this->service . '.' . ucfirst($method);
        }
        $body = self::encode($method, $payload, $codec);

        $seq = $this->sequence->next;
        $this->sequence->next = $seq >= 0xFFFFFFFF ? 0 : $seq + 1;

        try {
            $this->relay->send(new Frame($codec, [$seq, strlen($method)], $method . $body));
            $reply = $this->relay->waitFrame();
        } catch (RelayException $e) {
            $hint = str_starts_with($e->getMessage(), 'Could not connect')
                ? ' Is the server running, with an "rpc" section in its .rr.yaml? Workers find its address in RR_RPC.'
                : '';
            throw new RelayException(sprintf('RPC call %s to %s failed: %s%s', $method, $this->address, $e->getMessage(), $hint), 0, $e);
        }

        if (count($reply->options) !== 2) {
            throw new RPCException(sprintf(
                'Invalid RPC reply to %s from %s: expected 2 options [seq, method length], got %d.',
                $method,
                $this->address,
                count($reply->options),
            ));
        }
        if ($reply->options[0] !== $seq) {
            throw new RPCException(sprintf(
                'Invalid RPC reply to %s from %s: sequence mismatch (sent %d, got %d).',
                $method,
                $this->address,
                $seq,
                $reply->options[0],
            ));
        }
        if ($reply->options[1] > strlen($reply->payload)) {
            throw new RPCException(sprintf(
                'Invalid RPC reply to %s from %s: method length %d exceeds the %d-byte payload.',
                $method,
                $this->address,
                $reply->options[1],
                strlen($reply->payload),
            ));
        }

        $result = (string) substr($reply->payload, $reply->options[1]);
        if ($reply->hasFlag(Frame::ERROR)) {
            throw new ServiceException($result, $this->address, $method);
        }

        return self::decode($method, $result, $codec);
    }

    /**
     * @throws RPCException when the payload cannot be encoded in the codec
     */
    private static function encode(string $method, mixed $payload, int $codec): string
    {
        switch ($codec) {
            case self::JSON:
                try {
                    return json_encode($payload, JSON_THROW_ON_ERROR);
                } catch (\JsonException $e) {
                    throw new RPCException(sprintf('Cannot encode the argument of %s as JSON: %s', $method, $e->getMessage()), 0, $e);
                }
            case self::RAW:
            case self::PROTO:
                if (is_string($payload) || $payload instanceof \Stringable) {
                    return (string) $payload;
                }
                if ($codec === self::PROTO && is_object($payload) && method_exists($payload, 'serializeToString')) {
                    return (string) $payload->serializeToString();
                }
                throw new RPCException(sprintf(
                    'The argument of %s must be a string of bytes%s for this codec, %s given.',
                    $method,
                    $codec === self::PROTO ? ' or a protobuf message' : '',
                    get_debug_type($payload),
                ));
            default:
                throw new \InvalidArgumentException(sprintf(
                    'Unsupported RPC codec 0x%02x; use RPC::JSON, RPC::RAW or RPC::PROTO.',
                    $codec,
                ));
        }
    }

    /**
     * @throws RPCException when a JSON reply cannot be decoded
     */
    private static function decode(string $method, string $body, int $codec): mixed
    {
        if ($codec !== self::JSON) {
            return $body;
        }
        if ($body === '') {
            return null;
        }
        try {
            return json_decode($body, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new RPCException(sprintf('The reply to %s is not valid JSON: %s', $method, $e->getMessage()), 0, $e);
        }
    }

    /**
     * @throws \InvalidArgumentException for anything but tcp:// and unix:// addresses
     */
    private static function relayFor(string $address, float $connectTimeout): SocketRelay
    {
        if (!str_starts_with($address, 'tcp://') && !str_starts_with($address, 'unix://')) {
            throw new \InvalidArgumentException(sprintf(
                'Unsupported RPC address "%s"; expected "tcp://host:port" or "unix:///path" (as in rpc.listen).',
                $address,
            ));
        }
        // Checks the host:port or path syntax; connecting happens on the first call.
        Relay::create($address);

        return new SocketRelay($address, $connectTimeout);
    }
}
