<?php

declare(strict_types=1);

namespace Courser\Tests;

use Courser\Frame;
use Courser\Worker;
use PHPUnit\Framework\TestCase;

/**
 * The slow-request trace handler: real worker processes, started the way the
 * server starts them (pipes relay, COURSER_SLOWLOG=1), are sent SIGPROF as the
 * server does when a job passes slowlog_timeout.
 */
final class SlowlogTest extends TestCase
{
    /** The worker script, written to a temporary file for these tests. */
    private static string $script = '';

    /** @var resource|null */
    private $process;

    /** @var array<int, resource> */
    private array $pipes = [];

    private int $pid = 0;

    /** Everything read from the worker's STDERR so far. */
    private string $stderr = '';

    public static function setUpBeforeClass(): void
    {
        $autoload = var_export(dirname(__DIR__) . '/autoload.php', true);
        self::$script = (string) tempnam(sys_get_temp_dir(), 'courser-slowlog-worker-');
        file_put_contents(self::$script, <<<PHP
            <?php

            declare(strict_types=1);

            require {$autoload};

            use Courser\\Payload;
            use Courser\\Worker;

            function napUntil(float \$until): void
            {
                while ((\$left = \$until - microtime(true)) > 0) {
                    usleep((int) ceil(\$left * 1e6));
                }
            }

            function handle(string \$body): string
            {
                [\$command, \$argument] = array_pad(explode(':', \$body, 2), 2, '');
                switch (\$command) {
                    case 'nap':
                        napUntil(microtime(true) + (int) \$argument / 1000);

                        return 'napped';
                    case 'usleep':
                        \$start = hrtime(true);
                        usleep((int) \$argument * 1000);

                        return (string) intdiv(hrtime(true) - \$start, 1000000);
                    case 'time-limit':
                        set_time_limit((int) \$argument);
                        \$end = microtime(true) + 5;
                        while (microtime(true) < \$end) {
                        }

                        return 'the time limit did not end the worker';
                    default:
                        return \$body;
                }
            }

            \$worker = Worker::create();
            while (\$job = \$worker->waitPayload()) {
                \$worker->respond(new Payload(handle(\$job->body), \$job->context));
            }

            PHP);
    }

    public static function tearDownAfterClass(): void
    {
        @unlink(self::$script);
    }

    protected function setUp(): void
    {
        if (!function_exists('pcntl_signal') || !function_exists('proc_terminate')) {
            self::markTestSkipped('The slowlog handler needs ext-pcntl.');
        }
    }

    protected function tearDown(): void
    {
        if ($this->process !== null) {
            proc_terminate($this->process, 9);
            foreach ($this->pipes as $pipe) {
                if (is_resource($pipe)) {
                    fclose($pipe);
                }
            }
            proc_close($this->process);
            $this->process = null;
        }
    }

    public function testAStackBlockAnswersTheSignalAndTheJobGoesOn(): void
    {
        $this->start(['COURSER_SLOWLOG' => '1']);
        $this->waitForStderr('courser-slowlog-ready ' . $this->pid . "\n");

        $start = microtime(true);
        $this->sendJob('nap:600');
        usleep(200_000);
        proc_terminate($this->process, SIGPROF);
        self::assertSame('napped', $this->readResponse());
        $took = microtime(true) - $start;
        $this->waitForStderr('courser-slowlog-end ' . $this->pid . "\n");
        $status = $this->stop();

        self::assertSame(0, $status, $this->stderr);
        self::assertGreaterThanOrEqual(0.6, $took, 'a sleep that goes on after a signal is not cut short');
        // The signal is handled where usleep() returns to: the loop's condition.
        $file = self::$script;
        self::assertSame(
            "courser-slowlog-ready {$this->pid}\n"
            . "courser-slowlog-begin {$this->pid}\n"
            . '[0x0000] {signal}() ' . $file . ':' . self::lineOf('while (($left = $until') . "\n"
            . '[0x0001] napUntil() ' . $file . ':' . self::lineOf('napUntil(microtime(true)') . "\n"
            . '[0x0002] handle() ' . $file . ':' . self::lineOf('respond(new Payload(handle(') . "\n"
            . "courser-slowlog-end {$this->pid}\n",
            $this->stderr,
        );
    }

    public function testTheSignalEndsAUsleepEarly(): void
    {
        $this->start(['COURSER_SLOWLOG' => '1']);
        $this->waitForStderr('courser-slowlog-ready ' . $this->pid . "\n");

        $this->sendJob('usleep:2000');
        usleep(200_000);
        proc_terminate($this->process, SIGPROF);
        $slept = (int) $this->readResponse();
        $this->stop();

        // The documented side effect: usleep() returns at the signal.
        self::assertGreaterThanOrEqual(150, $slept);
        self::assertLessThan(1500, $slept);
        self::assertStringContainsString('courser-slowlog-begin ' . $this->pid . "\n[0x0000] {signal}() ", $this->stderr);
        self::assertStringContainsString("[0x0001] handle() ", $this->stderr);
    }

    public function testASignalHandledBetweenJobsSaysSoInsteadOfAStack(): void
    {
        $this->start(['COURSER_SLOWLOG' => '1']);
        $this->waitForStderr('courser-slowlog-ready ' . $this->pid . "\n");

        $this->sendJob('first');
        self::assertSame('first', $this->readResponse());
        usleep(100_000);
        // The worker waits for a job, and the handler runs once the next job arrives.
        proc_terminate($this->process, SIGPROF);
        usleep(100_000);
        $this->sendJob('second');
        self::assertSame('second', $this->readResponse());
        $this->stop();

        self::assertSame(
            'courser-slowlog-ready ' . $this->pid . "\ncourser-slowlog-idle " . $this->pid . "\n",
            $this->stderr,
        );
    }

    public function testNothingIsInstalledUnlessTheServerAsks(): void
    {
        foreach ([[], ['COURSER_SLOWLOG' => '0'], ['COURSER_SLOWLOG' => '']] as $env) {
            $this->start($env);
            $this->sendJob('echo');
            self::assertSame('echo', $this->readResponse());
            self::assertSame(0, $this->stop());
            self::assertSame('', $this->stderr, json_encode($env));
        }
    }

    public function testNothingIsInstalledWhenMaxExecutionTimeIsSet(): void
    {
        $this->start(['COURSER_SLOWLOG' => '1'], ['-d', 'max_execution_time=30']);
        $this->sendJob('echo');
        self::assertSame('echo', $this->readResponse());
        self::assertSame(0, $this->stop());
        self::assertSame('', $this->stderr);
    }

    public function testALaterTimeLimitStillEndsTheWorkerAsPhpWould(): void
    {
        $this->start(['COURSER_SLOWLOG' => '1']);
        $this->waitForStderr('courser-slowlog-ready ' . $this->pid . "\n");

        $this->sendJob('time-limit:1');
        $status = $this->stop();

        self::assertSame(255, $status, $this->stderr);
        self::assertMatchesRegularExpression(
            '/PHP Fatal error:  Maximum execution time of 1 second exceeded in ' . preg_quote(self::$script, '/') . ' on line \d+\n$/',
            $this->stderr,
        );
        self::assertStringNotContainsString('courser-slowlog-begin', $this->stderr);
    }

    public function testAnApplicationsOwnHandlerIsKept(): void
    {
        $previous = pcntl_signal_get_handler(SIGPROF);
        $own = static function (): void {
        };
        pcntl_signal(SIGPROF, $own);
        try {
            self::assertFalse(Worker::installSlowlogHandler());
            self::assertSame($own, pcntl_signal_get_handler(SIGPROF));
        } finally {
            pcntl_signal(SIGPROF, $previous);
        }
    }

    public function testTheBlockFormat(): void
    {
        $trace = [
            ['function' => 'onSlowlogSignal', 'class' => Worker::class, 'type' => '::', 'file' => '/app/a.php', 'line' => 7],
            ['function' => 'find', 'class' => 'App\Repo', 'type' => '->', 'file' => '/app/b.php', 'line' => 12],
            // A callback: called by an internal function, so it has no line of its own.
            ['function' => '{closure}'],
            ['function' => 'array_map', 'file' => '/app/c.php', 'line' => 3],
            ['function' => 'lost'],
        ];
        self::assertSame(
            "courser-slowlog-begin 42\n"
            . "[0x0000] {signal}() /app/a.php:7\n"
            . "[0x0001] App\\Repo->find() /app/b.php:12\n"
            . "[0x0002] {closure}() /app/c.php:3\n"
            . "[0x0003] array_map() /app/c.php:3\n"
            . "[0x0004] lost() unknown:0\n"
            . "courser-slowlog-end 42\n",
            Worker::formatSlowlog(42, $trace),
        );

        $deep = array_fill(0, Worker::SLOWLOG_MAX_FRAMES + 5, ['function' => 'f', 'file' => '/f.php', 'line' => 1]);
        $lines = explode("\n", Worker::formatSlowlog(1, $deep));
        self::assertCount(Worker::SLOWLOG_MAX_FRAMES + 4, $lines);
        self::assertSame('... 5 more frames', $lines[Worker::SLOWLOG_MAX_FRAMES + 1]);
        self::assertSame('courser-slowlog-end 1', $lines[Worker::SLOWLOG_MAX_FRAMES + 2]);
    }

    /**
     * The number of the first line of the worker script that contains $needle.
     */
    private static function lineOf(string $needle): int
    {
        foreach (file(self::$script) ?: [] as $i => $line) {
            if (str_contains($line, $needle)) {
                return $i + 1;
            }
        }
        self::fail("\"{$needle}\" is not in the worker script");
    }

    /**
     * Starts the worker over pipes, with $env added to the environment.
     *
     * @param array<string, string> $env
     * @param list<string>          $phpOptions
     */
    private function start(array $env, array $phpOptions = []): void
    {
        $this->tearDown();
        $this->stderr = '';
        $environment = getenv();
        unset($environment['RR_RELAY'], $environment['COURSER_SLOWLOG']);
        $process = proc_open(
            [PHP_BINARY, ...$phpOptions, self::$script],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            $env + $environment,
        );
        self::assertIsResource($process);
        $this->process = $process;
        $this->pipes = $pipes;
        $this->pid = (int) proc_get_status($process)['pid'];
    }

    private function sendJob(string $body): void
    {
        fwrite($this->pipes[0], Frame::encode(Frame::CODEC_JSON, [2], '{}' . $body));
    }

    /**
     * Reads the response to the job and returns its body.
     */
    private function readResponse(): string
    {
        $frame = Frame::fromBytes(TestSupport::readRawFrame($this->pipes[1]));

        return (string) substr($frame->payload, $frame->options[0] ?? 0);
    }

    /**
     * Reads STDERR until it contains $text (within 5 seconds).
     */
    private function waitForStderr(string $text): void
    {
        $deadline = microtime(true) + 5;
        while (!str_contains($this->stderr, $text)) {
            $left = $deadline - microtime(true);
            self::assertGreaterThan(0, $left, "no \"{$text}\" on STDERR: {$this->stderr}");
            if (TestSupport::readable($this->pipes[2], min($left, 0.1))) {
                $chunk = fread($this->pipes[2], 65536);
                self::assertNotFalse($chunk);
                $this->stderr .= $chunk;
            }
        }
    }

    /**
     * Sends the stop command, reads the rest of STDERR and returns the exit status.
     */
    private function stop(): int
    {
        fwrite($this->pipes[0], Frame::encode(Frame::CONTROL, [], '{"stop":true}'));
        fclose($this->pipes[0]);
        $this->stderr .= (string) stream_get_contents($this->pipes[2]);
        fclose($this->pipes[1]);
        fclose($this->pipes[2]);
        $status = proc_close($this->process);
        $this->process = null;

        return $status;
    }
}
