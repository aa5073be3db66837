<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Frame;
use Courser\Http\HttpWorker;
use Courser\Http\Legacy\ScriptCache;
use Courser\Http\ScriptWorker;
use Courser\Relay\StreamRelay;
use Courser\Tests\TestSupport;
use Courser\Worker;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/WorkerProcess.php';
require_once __DIR__ . '/Psr7Support.php';

/**
 * ScriptWorker in the test process, over a socket pair, and its cache
 * directory checks. The process tests (ScriptWorkerProcessTest) cover the
 * behaviour of scripts; these cover the API.
 */
final class ScriptWorkerTest extends TestCase
{
    private string $dir;

    /** @var resource */
    private $server;

    /** @var resource */
    private $client;

    protected function setUp(): void
    {
        HttpWorker::resetCodec();
        $this->dir = Psr7Support::tempDir();
        mkdir($this->dir . '/cache', 0700);
        [$this->server, $this->client] = TestSupport::socketPair();
    }

    protected function tearDown(): void
    {
        HttpWorker::resetCodec();
        fclose($this->server);
        fclose($this->client);
        exec('rm -rf ' . escapeshellarg($this->dir));
    }

    public function testBeginRunsTheRewrittenScriptAndEndSendsWhatItProduced(): void
    {
        file_put_contents($this->dir . '/page.php', "<?php\nheader('X-Page: yes');\nhttp_response_code(203);\necho 'hello ', \$_GET['name'] ?? '?', ' from ', basename(__FILE__);\n");
        $worker = $this->worker($this->dir . '/page.php');
        $saved = $_SERVER;

        try {
            fwrite($this->server, WorkerProcess::request('GET', 'http://localhost/page.php?name=Ada'));
            self::assertTrue($worker->next());
            self::assertSame(['name' => 'Ada'], $_GET);
            self::assertSame('Ada', ScriptWorker::request()?->query['name']);
            $path = ScriptWorker::script();
            self::assertStringStartsWith($this->dir . '/cache/', $path);
            require $path;
            ScriptWorker::finish();
        } finally {
            $_SERVER = $saved;
        }

        [$status, $headers, $body] = WorkerProcess::decode([Frame::fromBytes(TestSupport::readRawFrame($this->server))]);
        self::assertSame(203, $status);
        self::assertSame(['X-Page' => ['yes'], 'Content-Type' => ['text/html; charset=UTF-8']], $headers);
        self::assertSame('hello Ada from page.php', $body);
        self::assertSame([], $_GET, 'the superglobals are emptied after the request');
        self::assertNull(ScriptWorker::request());
        self::assertFalse($worker->getHttpWorker()->inFlight());
    }

    public function testHandleThrowableOutsideARequestRethrows(): void
    {
        file_put_contents($this->dir . '/page.php', "<?php\n");
        $worker = $this->worker($this->dir . '/page.php');

        $this->expectException(\LogicException::class);
        $worker->handleThrowable(new \LogicException('not in a request'));
    }

    public function testAMissingScriptIsRefused(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage('does not exist');

        $this->worker($this->dir . '/missing.php');
    }

    public function testACacheDirectoryOpenToOthersIsRefused(): void
    {
        mkdir($this->dir . '/open', 0777);
        chmod($this->dir . '/open', 0777);

        $this->expectException(\RuntimeException::class);
        $this->expectExceptionMessage('must belong to this user (uid');
        new ScriptCache($this->dir . '/open');
    }

    public function testACacheDirectoryThatIsASymlinkIsRefused(): void
    {
        symlink($this->dir . '/cache', $this->dir . '/link');

        $this->expectException(\RuntimeException::class);
        $this->expectExceptionMessage('is a symbolic link');
        new ScriptCache($this->dir . '/link');
    }

    public function testTheCacheWritesANewCopyWhenTheFileChanges(): void
    {
        $cache = new ScriptCache($this->dir . '/cache/new');
        self::assertSame(0700, fileperms($this->dir . '/cache/new') & 0777);
        file_put_contents($this->dir . '/a.php', "<?php\necho 1;\n");
        $first = $cache->compile($this->dir . '/a.php');
        self::assertSame($first, $cache->compile($this->dir . '/a.php'));

        file_put_contents($this->dir . '/a.php', "<?php\necho 22;\n");
        clearstatcache();
        $second = $cache->compile($this->dir . '/a.php');

        self::assertNotSame($first, $second);
        self::assertSame("<?php\necho 22;\n", file_get_contents($second));
        self::assertSame('at ' . $this->dir . '/a.php:2', $cache->mapPaths('at ' . $second . ':2'));
    }

    private function worker(string $script): ScriptWorker
    {
        return new ScriptWorker(
            new HttpWorker(new Worker(new StreamRelay($this->client, $this->client))),
            $script,
            cacheDir: $this->dir . '/cache',
        );
    }
}
