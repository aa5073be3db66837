<?php

declare(strict_types=1);

namespace Courser\Relay;

use Courser\Exception\RelayException;
use Courser\Frame;

/**
 * A relay over two PHP streams: one to read frames from and one to write
 * them to. With the "pipes" relay these are STDIN and STDOUT; a connected
 * socket may be passed as both.
 *
 * hasFrame() uses stream_select(), so the input must be selectable (a pipe,
 * a socket or a plain file; not php://memory or php://temp).
 */
final class StreamRelay implements RelayInterface
{
    /** @var resource */
    private $input;

    /** @var resource */
    private $output;

    /**
     * @param resource $input  the stream frames are read from
     * @param resource $output the stream frames are written to
     */
    public function __construct($input, $output)
    {
        foreach (['input' => $input, 'output' => $output] as $name => $stream) {
            if (!is_resource($stream) || get_resource_type($stream) !== 'stream') {
                throw new \InvalidArgumentException(sprintf('The %s of a StreamRelay must be an open stream.', $name));
            }
        }

        $this->input = $input;
        $this->output = $output;
    }

    public function waitFrame(): Frame
    {
        $header = $this->read(Frame::HEADER_SIZE);
        [$optionBytes, $payloadLength] = Frame::parseHeader($header);

        return Frame::decode($header, $this->read($optionBytes), $this->read($payloadLength));
    }

    public function send(Frame $frame): void
    {
        $data = $frame->toBytes();

        while ($data !== '') {
            error_clear_last();
            $written = @fwrite($this->output, $data);
            if ($written === false) {
                throw new RelayException('Writing to the relay failed: ' . (error_get_last()['message'] ?? 'unknown error'));
            }
            if ($written === 0) {
                // The stream accepted nothing this time (non-blocking and full): wait until it is writable.
                $this->select(false, null);
                continue;
            }
            $data = (string) substr($data, $written);
        }
    }

    public function hasFrame(): bool
    {
        return $this->select(true, 0);
    }

    /**
     * Reads exactly $length bytes. fread() may return fewer bytes than asked
     * (pipes and sockets return what has arrived so far), so this loops.
     */
    private function read(int $length): string
    {
        $data = '';

        while (($missing = $length - strlen($data)) > 0) {
            error_clear_last();
            $chunk = @fread($this->input, $missing);
            if ($chunk === false) {
                throw new RelayException('Reading from the relay failed: ' . (error_get_last()['message'] ?? 'unknown error'));
            }
            if ($chunk !== '') {
                $data .= $chunk;
                continue;
            }
            if (feof($this->input)) {
                throw new RelayException($data === '' && $length === Frame::HEADER_SIZE
                    ? 'The relay was closed by the server (EOF while waiting for a frame).'
                    : sprintf('The relay was closed by the server (EOF after %d of %d bytes of a frame).', strlen($data), $length));
            }
            // Nothing yet but not the end either (a socket read timed out): wait for data.
            $this->select(true, null);
        }

        return $data;
    }

    /**
     * Waits until the input is readable or the output is writable.
     *
     * @param int|null $timeout seconds to wait; 0 polls, null waits forever
     *
     * @return bool whether the stream is ready
     */
    private function select(bool $forRead, ?int $timeout): bool
    {
        $read = $forRead ? [$this->input] : [];
        $write = $forRead ? [] : [$this->output];
        $except = [];

        error_clear_last();
        $ready = @stream_select($read, $write, $except, $timeout, 0);
        if ($ready === false) {
            $error = error_get_last()['message'] ?? 'unknown error';
            if (str_contains($error, 'Interrupted system call')) {
                // A signal arrived; report "not ready" and let the caller try again.
                return false;
            }
            throw new RelayException('Polling the relay failed: ' . $error);
        }

        return $ready > 0;
    }
}
